"""`harness sweep`: one recipe at several N (rollouts per prompt), the same samples per step, from
one base under one budget, evaluated.

    harness sweep --profile smoke [--n 4,16,64,256,512] [--seeds K] [--out DIR] [key=value ...]

What is held fixed and what varies (docs/sweep.md):
- the recipe is `brorl` (the `rollout_scaling` trainer) with `train.rollout_scaling.n` = N and
  `train.rollout_scaling.samples_per_step` = S, so each step generates S samples per round at every
  N: prompts per step = S / N, and an N that does not divide S is refused in one line. S is the
  profile's rollout-scaling arm's own samples per step (rollout_scaling.n x prompts_per_step /
  prompt_divisor: 512 x 2 = 1,024 on `smoke`), unless train.rollout_scaling.samples_per_step is set.
  The learning rate follows the arm's rule at S (the same for every N), so at N = rollout_scaling.n
  the sweep's run is the `brorl` arm of `harness compare` itself;
- every run starts from the profile's base and spends the profile's compare budget
  (`compare.budget_kind`, `compare.budget`), with K = --seeds runs per N (train.seed s..s+K-1, as
  `harness compare --seeds`);
- the ΔQ_pos probe is on at every step (`train.probe_every=1`): what the sweep asks is whether the
  policy's mass on known-correct responses falls less often at large N;
- each run's checkpoint at the budget's end, at matched spend (the last step at or under it), is
  evaluated on every suite, with the profile's protocol. A run whose first step passed the budget
  has no step within it: the base is evaluated once, as its own row (evals/base.json), and that
  run's record says so (`base_stands`) with no scores, so the base is never shown under an N.

Layout of DIR (what harness/report/sweep.py reads; nothing there re-runs):

    config.json                   profile, recipe, ns, seeds, samples_per_step, budget, suites, base,
                                  each N's resolved config (of its first seed), provenance
    runs/n<N>/seed<k>/            that run's `harness train` folder (metrics.jsonl, config.json, ...)
    evals/n<N>-seed<k>.json       the evaluation of that run at the budget's end ({"base_stands": true}
                                  and no scores when its first step passed the budget)
    evals/base.json               the base's evaluation, only when some run's first step passed the budget
    sweep.json, sweep.md, sweep.png   written by the caller (`harness sweep`) with harness/report/sweep.py

A sweep starts in a new or empty folder (there is no --resume).
"""

from __future__ import annotations

from pathlib import Path

from harness import provenance
from harness.config import Config, ConfigError, load_config, to_dict
from harness.jobs.base_model import base_checkpoint
from harness.jobs.compare import matched_checkpoints, run_seeds, write_evaluation
from harness.jobs.train import check_requirements, run_training
from harness.runs import (
    METRICS_FILE,
    Budget,
    describe_folder,
    read_metrics,
    sweep_base_eval_path,
    sweep_eval_path,
    sweep_run_dir,
    write_json_atomic,
)

RECIPE = "brorl"
"""The one recipe of a sweep: the rollout-scaling arm, N overridden."""

DEFAULT_NS = (4, 16, 64, 256, 512)
"""`--n` when not given: from below the step-scaling arm's 16 to the paper's 512."""


def samples_per_step(cfg: Config) -> int:
    """The samples per step a sweep holds fixed: train.rollout_scaling.samples_per_step if set, else
    the profile's rollout-scaling arm's own (rollout_scaling.n x prompts_per_step // prompt_divisor)."""
    rule = cfg.train.rollout_scaling
    return rule.samples_per_step or rule.n * (cfg.train.prompts_per_step // rule.prompt_divisor)


def sweep_configs(profile: str, ns: list[int], overrides: list[str], seed: int | None = None) -> dict[int, Config]:
    """Each N's config of the sweep; with `seed`, its train.seed is that value (one run of --seeds).
    Refuses, in one line, an empty or repeated --n, N = 1, a trainer other than rollout_scaling, and
    an N that does not divide the samples per step."""
    if not ns:
        raise ConfigError("invalid value for --n: no N given; expected comma-separated positive integers")
    if min(ns) < 2:
        raise ConfigError(f"invalid value for --n: N={min(ns)}; a group of one sample has no reward spread, so dynamic "
                          "sampling would keep nothing: N must be >= 2")
    repeated = sorted({n for n in ns if ns.count(n) > 1})
    if repeated:
        raise ConfigError(f"invalid value for --n: N={repeated[0]} is given twice; list each N once")
    base = load_config(profile, overrides, recipe=RECIPE)
    if base.train.trainer != "rollout_scaling":
        raise ConfigError(f"invalid value for 'train.trainer' with `harness sweep`: {base.train.trainer!r}; the sweep "
                          "varies train.rollout_scaling.n of the rollout_scaling trainer (leave train.trainer alone)")
    total = samples_per_step(base)
    bad = [n for n in ns if total % n]
    if bad:
        divisors = [d for d in range(2, total + 1) if total % d == 0]
        shown = ",".join(map(str, divisors if len(divisors) <= 12 else divisors[:6] + ["..."] + divisors[-3:]))
        raise ConfigError(f"invalid value for --n: N={bad[0]} does not divide the {total} samples per step into whole "
                          f"prompts (prompts per step = samples per step / N); use divisors of {total} ({shown}), "
                          "or set train.rollout_scaling.samples_per_step")
    extra = [f"train.rollout_scaling.samples_per_step={total}", "train.probe_every=1", "train.save_every=0"]
    pinned = [] if seed is None else [f"train.seed={seed}"]
    return {n: load_config(profile, overrides + extra + [f"train.rollout_scaling.n={n}"] + pinned, recipe=RECIPE)
            for n in ns}


def run_sweep(profile: str, ns: list[int], out: Path, overrides: list[str], seeds: int = 1, progress: bool = True,
              log=print) -> Path:
    """Train and evaluate every (N, seed) of the sweep in `out` (see the module's docstring); returns
    `out`. Everything is checked before the base is built or anything written."""
    configs = sweep_configs(profile, ns, overrides)
    seed_values = run_seeds({f"N={n}": cfg for n, cfg in configs.items()}, seeds)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"output folder '{out}' is {describe_folder(out)}; a sweep starts in a new or empty folder, "
                          "choose another --out")
    base_cfg = load_config(profile, overrides)
    check_requirements(base_cfg)
    budget = Budget(base_cfg.compare.budget_kind, base_cfg.compare.budget)
    first = configs[ns[0]]
    base = base_checkpoint(base_cfg, progress=progress, log=log)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", {
        "profile": base_cfg.profile,
        "recipe": RECIPE,
        "ns": list(ns),
        "seeds": seed_values,
        "samples_per_step": first.train.rollout_scaling.samples_per_step,
        "budget": {"kind": budget.kind, "amount": budget.amount},
        "suites": list(base_cfg.suites.enabled),
        "base_checkpoint": base,
        "configs": {str(n): to_dict(cfg) for n, cfg in configs.items()},
        "configs_note": f"resolved config of each N's first run; run k differs only in train.seed = {seed_values}",
        "provenance": provenance.collect(seed=base_cfg.seed, base_checkpoint=base),
    })
    for seed in seed_values:  # seed-major: an interrupted sweep has every N of its first seeds
        for n, cfg in sweep_configs(profile, ns, overrides, seed=seed).items():
            folder = sweep_run_dir(out, n, seed)
            log(f"training N={n} ({cfg.train.rollout_scaling.samples_per_step // n} prompts per step, "
                f"train.seed={seed}): {budget.amount:g} {budget.kind}")
            run_training(cfg, f"{RECIPE}-n{n}", folder, base=base, progress=progress, log=log, budget=budget)
            rows = read_metrics(folder / METRICS_FILE)
            for step, kept in matched_checkpoints(folder, rows, budget, [1.0], arm=f"N={n} seed {seed}").items():
                target = sweep_eval_path(out, n, seed)
                if kept is None:  # the first step passed the budget: no RL step of this N is within it
                    if not sweep_base_eval_path(out).exists():
                        log("evaluating the base (a run's first step passed the budget)")
                        write_evaluation(sweep_base_eval_path(out), base_cfg, base, {"method": "baseline", "step": 0},
                                         progress=progress)
                    log(f"N={n} seed {seed}: its first step passed the budget; the base row stands for it")
                    write_json_atomic(target, {"checkpoint": base, "n": n, "seed": seed, "step": 0, "base_stands": True})
                    continue
                log(f"evaluating N={n} seed {seed} at step {step}")
                write_evaluation(target, cfg, str(kept), {"n": n, "seed": seed, "step": step}, progress=progress)
    return out
