"""`harness compare A B`: two RL arms from one base checkpoint under the same budget, evaluated.

    harness compare prorl brorl --profile tiny [--out DIR] [--resume] [key=value ...]

1. Bootstrap (or reuse) the profile's base checkpoint and evaluate it: the "baseline" rows.
2. Train each arm from that base until it has spent `compare.budget` (wall-clock training
   seconds by default, as the paper compares hours; or generated samples, tokens, steps),
   saving a checkpoint the first time it crosses each of `compare.eval_points` x budget.
3. Evaluate every such checkpoint on every suite of the profile.
4. Render summary.json, tables.md and figure1.png (harness/report.py), next to the paper's rows.

Layout of DIR: `config.json` (resolved configs of both arms, provenance), `evals/<label>.json`
(one per evaluated checkpoint), `arms/<arm>/` (the arm's `harness train` folder: metrics.jsonl,
config.json, checkpoints/, tb/), and the rendered reports. Everything is written atomically and an
interrupted comparison continues with `--resume`: finished evaluations are kept, arms resume from
their newest checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from harness import provenance
from harness.config import Config, ConfigError, available_recipes, load_config, to_dict
from harness.files import write_json_atomic
from harness.train import CHECKPOINTS, Budget, run_training

ARMS = "arms"
EVALS = "evals"


def resolve_arm(name: str) -> tuple[str, list[str]]:
    """(recipe, extra overrides) for an arm named by a recipe or by a registered trainer."""
    if name in available_recipes():
        return name, []
    from trainers.registry import available

    if name in available():
        return "prorl", [f"train.trainer={name}"]
    raise ConfigError(
        f"unknown arm '{name}'; valid: a recipe ({', '.join(available_recipes())}) or a registered trainer "
        f"({', '.join(sorted(available()))})"
    )


def arm_configs(profile: str, arms: list[str], overrides: list[str]) -> dict[str, Config]:
    if len(arms) != 2 or arms[0] == arms[1]:
        raise ConfigError(f"compare needs two different arms, got {' '.join(arms) or 'none'}")
    out = {}
    for arm in arms:
        recipe, extra = resolve_arm(arm)
        out[arm] = load_config(profile, overrides + extra + ["train.save_every=0"], recipe=recipe)
    return out


def run_compare(profile: str, arms: list[str], out: Path, overrides: list[str], resume: bool = False,
                progress: bool = True, log=print) -> Path:
    """Run (or continue) a comparison in `out`; returns `out`."""
    from harness.bootstrap import bootstrap
    from harness.evaluate import evaluate_checkpoint
    from harness.report import render
    from suites import SUITES

    configs = arm_configs(profile, arms, overrides)
    base_cfg = load_config(profile, overrides)
    if (out / "config.json").exists() and not resume:
        raise ConfigError(f"output folder '{out}' already holds a comparison; pass --resume to continue it, or choose another --out")
    c = base_cfg.compare
    budget = Budget(c.budget_kind, c.budget)
    base = str(bootstrap(base_cfg, progress=progress, log=log))
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", {
        "profile": base_cfg.profile,
        "arms": arms,
        "base_checkpoint": base,
        "budget": {"kind": budget.kind, "amount": budget.amount, "eval_points": list(c.eval_points)},
        "suites": list(SUITES),
        "configs": {arm: to_dict(cfg) for arm, cfg in configs.items()},
        "provenance": provenance.collect(seed=base_cfg.seed, base_checkpoint=base),
    })

    def evaluate(label: str, cfg: Config, checkpoint: str, extra: dict) -> None:
        target = out / EVALS / f"{label}.json"
        if target.exists():
            return
        log(f"evaluating {label}")
        scores = evaluate_checkpoint(cfg, checkpoint, SUITES, progress=progress)
        write_json_atomic(target, {"checkpoint": checkpoint, **extra,
                                   "suites": {name: s.to_json() for name, s in scores.items()}})

    evaluate("baseline", base_cfg, base, {"method": "baseline", "step": 0})
    for arm, cfg in configs.items():
        arm_dir = out / ARMS / arm
        log(f"training {arm}: {budget.amount:g} {budget.kind}")
        run_training(cfg, arm, arm_dir, resume=(arm_dir / "metrics.jsonl").exists(), base=base, progress=progress,
                     log=log, budget=budget, checkpoint_fractions=tuple(c.eval_points))
        for checkpoint in sorted((arm_dir / CHECKPOINTS).glob("step_*")):
            step = int(checkpoint.name.split("_")[1])
            evaluate(f"{arm}-{checkpoint.name}", cfg, str(checkpoint), {"method": arm, "step": step})
    render(out)
    return out
