"""`harness compare A B`: two RL arms from one base checkpoint under the same budget, evaluated.

    harness compare prorl brorl --profile tiny [--seeds K] [--out DIR] [--resume] [key=value ...]

1. Bootstrap (or reuse) the profile's base checkpoint and evaluate it, and the earlier checkpoint
   of its RL curve when the bootstrap kept one (`early/`): the "baseline" rows, labelled with their
   RL step (the paper's base at 2,000 and 3,000 steps).
2. Train each arm K times from that same base, with `train.seed` = s, s+1, ..., s+K-1 (s is the
   configured `train.seed`, 0 by default): the arm's own RL randomness (prompt order, sampling,
   mini-batch shuffles). The master `seed` fixes the base and the data splits, so every run is
   evaluated on the same items. Each run spends `compare.budget` (wall-clock training seconds by
   default, as the paper compares hours; CPU seconds of training, which a busy machine moves far
   less than wall-clock, the `tiny` profile's kind; or generated samples, tokens, steps). At each of
   `compare.eval_points` x budget it is evaluated at matched spend: the last checkpoint whose spend
   is at or under that point (run_training keeps one there), never the step that passed it, so an
   arm with long steps (rollout scaling) gets no extra training from its last step's overshoot.
3. Evaluate each of those checkpoints on every suite of the profile (a checkpoint that serves two
   evaluation points is evaluated once).
4. The caller (`harness compare`, `harness regress`) then renders summary.json, tables.md and
   figure1.png with harness/report/: means over seeds with their intervals, next to the paper's rows.

Layout of DIR:

    config.json                      arms, seeds, budget, base checkpoints, resolved configs, provenance
    bootstrap.json                   copy of the base's training record (its RL curve, for the figure)
    evals/baseline-rl<step>.json     one per base checkpoint (final and early), by RL step
    evals/<arm>-seed<k>-step_<n>.json  one per evaluated checkpoint of each run
    arms/<arm>/seed<k>/              that run's `harness train` folder: metrics.jsonl, config.json,
                                     checkpoints/, tb/
    summary.json, tables.md, figure1.png

Everything is written atomically, and an interrupted comparison continues with `--resume`:
finished evaluations are kept, runs resume from their newest checkpoint. What defines the
comparison (profile, arms, seeds, budget, base, and the arms' resolved configs except run-time knobs
such as threads or device: RUNTIME_KEYS) cannot change on `--resume`; that is refused in one line,
as is a folder that holds no comparison or a damaged one (`read_comparison`), before the base is
built or anything written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from harness import provenance
from harness.backends.verl.compile import plan_steps
from harness.checkpoint import CheckpointError, check_checkpoint
from harness.config import Config, ConfigError, available_recipes, load_config, to_dict
from harness.jobs import train_verl as verl_job
from harness.jobs.base_model import base_checkpoint, bootstrap, checkpoint_dir
from harness.jobs.eval_queue import EvalQueue
from harness.jobs.eval_replica import Replicas
from harness.jobs.eval_run import evaluate_beside
from harness.jobs.train import check_requirements, run_training
from harness.jobs.train_verl import VerlOptions
from harness.runs import (
    ARMS,
    BASE_RECORD,
    CHECKPOINTS,
    EARLY,
    EVALS,
    METRICS_FILE,
    SPEND_RULE,
    VERL_DIR,
    Budget,
    checkpoint_name,
    describe_folder,
    folder_kind,
    kept_steps,
    point_steps,
    read_metrics,
    read_record,
    run_dir,
    verl_hf_checkpoint,
    write_json_atomic,
)
from trainers.registry import available


def resolve_arm(name: str) -> tuple[str, list[str]]:
    """(recipe, extra overrides) for an arm named by a recipe or by a registered trainer."""
    if name in available_recipes():
        return name, []

    if name in available():
        return "prorl", [f"train.trainer={name}"]
    raise ConfigError(
        f"unknown arm '{name}'; valid: a recipe ({', '.join(available_recipes())}) or a registered trainer "
        f"({', '.join(sorted(available()))})"
    )


def arm_configs(profile: str, arms: list[str], overrides: list[str], seed: int | None = None,
                verl: bool = False) -> dict[str, Config]:
    """Each arm's config; with `seed`, its `train.seed` is that value (one run of `--seeds`). The
    harness's own trainer keeps a checkpoint at every budget point by itself, so its periodic
    resume checkpoints are off (train.save_every=0); under verl (`verl`) train.save_every is
    honoured as given: verl's saves are the only checkpoints matched spend can evaluate
    (`plan_steps` chooses one for 0)."""
    if len(arms) != 2 or arms[0] == arms[1]:
        raise ConfigError(f"compare needs two different arms, got {' '.join(arms) or 'none'}")
    out = {}
    for arm in arms:
        recipe, extra = resolve_arm(arm)
        pinned = [] if seed is None else [f"train.seed={seed}"]
        own = [] if verl else ["train.save_every=0"]
        out[arm] = load_config(profile, overrides + extra + own + pinned, recipe=recipe)
    return out


def run_seeds(configs: dict[str, Config], k: int) -> list[int]:
    """The `train.seed` values of the K runs per arm: the configured train.seed and the K-1 after it."""
    if k < 1:
        raise ConfigError(f"invalid value for --seeds: {k}; expected a positive integer")
    firsts = {cfg.train.seed for cfg in configs.values()}
    if len(firsts) != 1:
        raise ConfigError(f"the arms resolve to different train.seed values ({sorted(firsts)}); set train.seed once for both")
    first = firsts.pop()
    return list(range(first, first + k))


def base_info(base: Path) -> dict:
    """The base checkpoint(s) of a comparison: final and (if the bootstrap kept one) early, with RL steps."""

    record = json.loads((base / BASE_RECORD).read_text()) if (base / BASE_RECORD).is_file() else {}
    early = base / EARLY
    early_step = record.get("early_rl_step")
    has_early = (early / "config.json").is_file() and early_step is not None
    rl_points = [p for p in record.get("curve", []) if p.get("phase") == "rl" and p.get("rl_step") is not None]
    # the curve's own RL step counter is authoritative (`rl_steps` has also been written as the global step)
    rl_steps = rl_points[-1]["rl_step"] if rl_points else record.get("rl_steps")
    return {
        "checkpoint": str(base),
        "rl_steps": int(rl_steps or 0),
        "sft_steps": record.get("sft_steps"),
        "early_checkpoint": str(early) if has_early else None,
        "early_rl_step": int(early_step) if has_early else None,
    }


_NO_DEFAULT = object()

RUNTIME_KEYS = {"torch_threads", "cache_dir", "rollout.device", "rollout.max_batch_sequences", "eval.prompts_per_call",
                "scoring.workers", "train.micro_batch_tokens", "train.loggers"}
"""Config keys that may change on --resume: where and how fast it runs, not what it computes."""


def config_changes(old, new, prefix: str = "", defaults=None) -> list[str]:
    """Dotted keys whose values differ between two resolved configs (as dicts), run-time knobs aside.
    With `defaults` (the schema's, as a dict), a key the old config lacks and the new one holds at
    its schema default is no change: a field added since the folder was written (train.probe_every),
    whose default is the behaviour it was written with."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            default = defaults.get(key, _NO_DEFAULT) if isinstance(defaults, dict) else _NO_DEFAULT
            if key not in old and key in new and new[key] == default:
                continue
            out += config_changes(old.get(key), new.get(key), f"{prefix}{key}.",
                                  default if default is not _NO_DEFAULT else None)
        return out
    key = prefix.rstrip(".")
    return [] if old == new or key in RUNTIME_KEYS else [key]


def read_comparison(out: Path) -> dict:
    """The config.json of the comparison in `out`, for --resume. Refuses in one line, before anything
    is built or written, a folder that holds no comparison (empty, a `harness train` run, a
    checkpoint) or a damaged one (its config.json, an evaluation or a run's config.json not valid
    JSON; a run's checkpoint without its weights)."""
    kind = folder_kind(out)
    if kind == "train run":
        raise ConfigError(f"cannot --resume '{out}' with `harness compare`: it is a `harness train` run's folder; continue "
                          f"it with `harness train RECIPE --out {out} --resume`")
    if not (out / "config.json").is_file():
        raise ConfigError(f"nothing to resume in '{out}': it holds no comparison (no config.json: it is "
                          f"{describe_folder(out)}); run without --resume to start one there")
    if kind == "broken":
        raise ConfigError(f"cannot --resume '{out}': its config.json is not valid JSON (a half-written or damaged "
                          "comparison); start the comparison again with another --out")
    if kind != "comparison":
        raise ConfigError(f"cannot --resume '{out}': it is {describe_folder(out)}, not a comparison (its config.json was "
                          "not written by `harness compare`); give the folder `harness compare --out` wrote")
    for path in sorted((out / EVALS).glob("*.json")):
        if read_record(path) is None:
            raise ConfigError(f"cannot --resume '{out}': '{path}' is not valid JSON (a damaged evaluation); delete it "
                              "and resume again to evaluate that checkpoint anew")
    for run in sorted((out / ARMS).glob("*/seed*")):
        if (run / "config.json").is_file() and read_record(run / "config.json") is None:
            raise ConfigError(f"cannot --resume '{out}': '{run / 'config.json'}' is not valid JSON (a damaged run); "
                              "start the comparison again with another --out")
        for checkpoint in sorted((run / CHECKPOINTS).glob("step_*")):
            try:
                check_checkpoint(str(checkpoint))
            except CheckpointError as exc:
                raise CheckpointError(f"cannot --resume '{out}' (a damaged run): {exc}") from None
    return read_record(out / "config.json")


def _check_resume(out: Path, stored: dict, now: dict) -> None:
    """Refuse to continue a comparison under a different definition (one line)."""
    if stored.get("spend_rule") != SPEND_RULE:
        raise ConfigError(f"'{out}' was written by an older harness (its evaluation points are the steps that passed "
                          "them, not matched spend); start a new comparison with another --out")
    if stored["seeds"] != now["seeds"]:
        raise ConfigError(
            f"cannot --resume '{out}' with --seeds {len(now['seeds'])} (train.seed {now['seeds']}): it was started with "
            f"--seeds {len(stored['seeds'])} (train.seed {stored['seeds']}); resume with that K (or without --seeds), "
            "or start another --out"
        )
    def refuse(key: str, what: str) -> None:
        if stored.get(key) != now[key]:
            raise ConfigError(
                f"cannot --resume '{out}': {what} changed: it was started with {stored.get(key)!r}, now {now[key]!r}; "
                "use the original settings, or another --out"
            )

    refuse("profile", "the profile")
    refuse("arms", "the arms")
    refuse("budget", "the budget (compare.budget, budget_kind, eval_points)")
    for arm, cfg in now["configs"].items():
        changed = config_changes(stored.get("configs", {}).get(arm), cfg, defaults=to_dict(Config()))
        if changed:
            raise ConfigError(
                f"cannot --resume '{out}': the config of arm '{arm}' changed ({', '.join(changed[:5])}"
                f"{', ...' if len(changed) > 5 else ''}); resume with the original profile and overrides, or use another --out"
            )
    refuse("base_key", "the base checkpoint (the code or settings that build it)")


def run_compare(profile: str, arms: list[str], out: Path, overrides: list[str], resume: bool = False,
                progress: bool = True, log=print, seeds: int | None = None,
                after_eval: Callable[[Path], None] | None = None, verl: VerlOptions | None = None,
                replicas: Replicas | None = None, evals_at_once_asked: int | None = None) -> Path:
    """Run (or continue) a comparison in `out` with K = `seeds` runs per arm (default: 1, or on resume
    the K it was started with); returns `out`. `after_eval(out)` runs after each new evaluation is
    written (`harness regress --fail-fast` checks the rows so far there and may raise to stop).

    `verl`: each run is a verl job (harness/jobs/train_verl.py) instead of the in-process trainer:
    its metrics are read back from verl's log and its HF checkpoints evaluated here, at matched
    spend among the steps verl kept checkpoints of. With `verl.dry_run` only the runs' verl files
    are written (arms/<arm>/seed<k>/verl/), no comparison, nothing run or evaluated.

    `replicas`: each evaluation's engine calls spread over Ray replicas (`harness eval --replicas`);
    each evaluation keeps its responses in evals/<label>/ and resumes there. With the replicas on a
    cluster of their own (`replicas.address`), up to `evals_at_once_asked` (`evals_at_once`)
    evaluations run at once beside the training (harness/jobs/eval_queue.py)."""
    kind = folder_kind(out)
    if kind == "comparison" and not resume:
        raise ConfigError(f"output folder '{out}' already holds a comparison; pass --resume to continue it, or choose another --out")
    if kind in ("train run", "sweep", "checkpoint", "broken", "file") and not resume:
        raise ConfigError(f"output folder '{out}' is {describe_folder(out)}, not a comparison; choose another --out")
    stored = read_comparison(out) if resume else None
    if seeds is None:
        seeds = len(stored["seeds"]) if stored and isinstance(stored.get("seeds"), list) else 1
    on_verl = verl is not None
    run_seed_values = run_seeds(arm_configs(profile, arms, overrides, verl=on_verl), seeds)
    base_cfg = load_config(profile, overrides)
    if verl is not None and verl.dry_run:
        for seed in run_seed_values:
            for arm, cfg in arm_configs(profile, arms, overrides, seed=seed, verl=True).items():
                plan = plan_steps(cfg)
                log(f"{arm} (train.seed={seed}): {plan.steps} steps ({plan.basis}); budget points at steps {plan.point_steps}; "
                    f"a checkpoint every {plan.save_every} steps ({plan.save_basis})")
                verl_job.prepare(cfg, arm, run_dir(out, arm, seed), verl, plan=plan, log=log)
        return out
    if verl is None or verl.address is None:  # a verl job on a remote cluster needs no GPU here, its evaluation does
        check_requirements(base_cfg)
    c = base_cfg.compare
    budget = Budget(c.budget_kind, c.budget)
    if verl is not None and budget.kind == "cpu_s":
        raise ConfigError("invalid value for 'compare.budget_kind': 'cpu_s' meters this machine's training process, and a "
                          "verl run trains elsewhere (Ray workers, GPUs); use wall_s, samples, tokens or steps with --backend verl")
    at_once = evals_at_once(replicas, budget, evals_at_once_asked, log)  # before anything is written: it checks the value
    identity = {
        "profile": base_cfg.profile,
        "arms": list(arms),
        "seeds": run_seed_values,
        "budget": {"kind": budget.kind, "amount": budget.amount, "eval_points": list(c.eval_points)},
        "base_key": (f"{base_cfg.base.checkpoint}@{base_cfg.base.revision or 'default'}" if base_cfg.base.checkpoint
                     else checkpoint_dir(base_cfg).name),
    }
    configs = arm_configs(profile, arms, overrides, seed=run_seed_values[0], verl=on_verl)
    if stored is not None:
        _check_resume(out, stored, {**identity, "configs": {arm: to_dict(cfg) for arm, cfg in configs.items()}})
    if base_cfg.base.checkpoint:  # an existing checkpoint (the ProRLv2 one): nothing is bootstrapped
        base_path = Path(base_checkpoint(base_cfg))
        base = {"checkpoint": base_cfg.base.checkpoint, "rl_steps": base_cfg.base.rl_steps, "sft_steps": None,
                "early_checkpoint": None, "early_rl_step": None}
    else:
        base_path = bootstrap(base_cfg, progress=progress, log=log)
        base = base_info(base_path)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", {  # first: a folder with a config.json holds a comparison
        **identity,
        "n_seeds": len(run_seed_values),
        "spend_rule": SPEND_RULE,
        "base_checkpoint": base["checkpoint"],
        "base": base,
        "suites": list(base_cfg.suites.enabled),
        "configs": {arm: to_dict(cfg) for arm, cfg in configs.items()},
        "configs_note": f"resolved config of each arm's first run; run k differs only in train.seed = {run_seed_values}",
        "provenance": provenance.collect(seed=base_cfg.seed, base_checkpoint=base["checkpoint"]),
    })
    if (base_path / BASE_RECORD).is_file():
        write_json_atomic(out / BASE_RECORD, json.loads((base_path / BASE_RECORD).read_text()))

    with ExitStack() as stack:
        if at_once > 1:  # one Ray connection for every evaluation in flight
            from harness.jobs.eval_ray import connected  # lazy: Ray is an optional dependency

            stack.enter_context(connected(base_cfg, replicas))
        queue = stack.enter_context(EvalQueue(at_once, after=(lambda: after_eval(out)) if after_eval else None))
        _run_arms(out, profile, arms, overrides, run_seed_values, base, base_cfg, budget, c.eval_points, verl, on_verl,
                  queue, replicas, progress, log)
        queue.wait()
    return out


def evals_at_once(replicas: Replicas | None, budget: Budget, asked: int | None, log=print) -> int:
    """How many evaluations a comparison runs at once (`--evals-at-once`): with its replicas on a Ray
    cluster of their own (`--eval-address`), `asked` (default `EVALS_AT_ONCE`), beside the training;
    else 1, between trainings: a local cluster's replicas share this machine's cores with the
    training, and a `cpu_s` budget meters this process, whose threads would do the bookkeeping."""
    if asked is not None and asked < 1:
        raise ConfigError(f"invalid value for --evals-at-once: {asked}; expected a positive integer")
    if replicas is None or replicas.address is None:
        if asked not in (None, 1):
            log(f"--evals-at-once {asked}: evaluations run one at a time without --eval-address (a local cluster's replicas "
                "share this machine with the training)")
        return 1
    if budget.kind == "cpu_s":
        if asked not in (None, 1):
            log(f"--evals-at-once {asked}: evaluations run one at a time under a cpu_s budget (it meters this process)")
        return 1
    return asked or EVALS_AT_ONCE


EVALS_AT_ONCE = 4
"""Evaluations in flight at once on an evaluation cluster, each with its own replicas; more wait in
Ray's queue for free GPUs anyway, and four keep a cluster busy while a comparison's arms train."""


def _run_arms(out: Path, profile: str, arms: list[str], overrides: list[str], run_seed_values: list[int], base: dict,
              base_cfg: Config, budget: Budget, fractions, verl: VerlOptions | None, on_verl: bool, queue: EvalQueue,
              replicas: Replicas | None, progress: bool, log) -> None:
    """The baseline's evaluations and every run of every arm, each run's checkpoints evaluated at
    matched spend through `queue` (at once, or beside what trains next)."""

    def evaluate(label: str, cfg: Config, checkpoint: str, extra: dict) -> None:
        target = out / EVALS / f"{label}.json"
        if target.exists():
            return

        def run() -> None:
            log(f"evaluating {label}")
            write_evaluation(target, cfg, checkpoint, extra, progress=progress and not queue.concurrent, replicas=replicas)
            if queue.concurrent:
                log(f"evaluated {label}")

        queue.submit(label, run)

    baselines = [(base["rl_steps"], base["checkpoint"], "final")]
    if base["early_checkpoint"] is not None and base["early_rl_step"] != base["rl_steps"]:
        baselines.insert(0, (base["early_rl_step"], base["early_checkpoint"], "early"))
    for rl_step, checkpoint, role in baselines:
        evaluate(f"baseline-rl{rl_step}", base_cfg, checkpoint,
                 {"method": "baseline", "step": rl_step, "rl_step": rl_step, "base": role})
    for seed in run_seed_values:  # seed-major: an interrupted comparison has whole pairs of runs
        configs = arm_configs(profile, arms, overrides, seed=seed, verl=on_verl)
        for arm, cfg in configs.items():
            queue.check()  # an evaluation that failed meanwhile stops the comparison before more training
            folder = run_dir(out, arm, seed)
            if verl is not None:
                _run_verl(cfg, arm, seed, folder, verl, base["checkpoint"], budget, fractions, evaluate, log)
                continue
            rows = read_metrics(folder / METRICS_FILE)
            if rows and budget.used(rows[-1]) >= budget.amount and (folder / CHECKPOINTS / checkpoint_name(rows[-1]["step"])).is_dir():
                log(f"{arm} (train.seed={seed}): budget already spent, {rows[-1]['step']} steps")
            else:
                log(f"training {arm} (train.seed={seed}): {budget.amount:g} {budget.kind}")
                run_training(cfg, arm, folder, resume=(folder / METRICS_FILE).exists(), base=base["checkpoint"],
                             progress=progress, log=log, budget=budget, checkpoint_fractions=tuple(fractions))
                rows = read_metrics(folder / METRICS_FILE)
            evaluate_points(folder, rows, budget, fractions, arm, seed, cfg, evaluate, log)
    running = queue.running()
    if running:
        log(f"waiting for {len(running)} evaluations: {', '.join(running)}")


def matched_checkpoints(folder: Path, rows: list[dict], budget: Budget, fractions, arm: str = "the arm",
                        stopped_at_budget: bool | None = None) -> dict[int, Path | None]:
    """The checkpoint each evaluated step of the run in `folder` stands for, by step, ascending: the
    steps of matched spend (`point_steps`, among the kept checkpoints: `kept_steps`); step 0 (the
    run's first step passed the point) maps to None: the base stands there, and it is evaluated as
    the base (the baseline row), never under the arm's name. A point with steps at or under it but
    no kept checkpoint is a `SpendError`. `stopped_at_budget` (default: whether verl's budget
    watcher stopped the run, verl/budget_stop.json): every point is reached although no step passed
    the last one (the step that would have passed it never ran)."""
    if stopped_at_budget is None:
        stopped_at_budget = verl_job.budget_stop(folder) is not None
    steps = sorted({s for s in point_steps(rows, budget, fractions, kept=kept_steps(folder), arm=arm,
                                           stopped_at_budget=stopped_at_budget).values() if s is not None})
    return {step: (checkpoint_path(folder, step) if step else None) for step in steps}


def checkpoint_path(folder: Path, step: int) -> Path:
    """The evaluable checkpoint of `step` in a run folder: the harness's own, else verl's HF one."""
    own = folder / CHECKPOINTS / checkpoint_name(step)
    return own if own.is_dir() else verl_hf_checkpoint(folder / VERL_DIR / CHECKPOINTS, step)


def evaluate_points(folder: Path, rows: list[dict], budget: Budget, fractions, arm: str, seed: int, cfg: Config,
                    evaluate, log, extra: dict | None = None) -> None:
    """Evaluate the run's checkpoints at matched spend, each once; a point the base stands for is
    logged and left to the baseline row."""
    for step, checkpoint in matched_checkpoints(folder, rows, budget, fractions, arm=f"{arm} seed {seed}").items():
        if checkpoint is None:
            log(f"{arm} (train.seed={seed}): its first step passed a budget point; the base stands for it (baseline row)")
            continue
        evaluate(f"{arm}-seed{seed}-{checkpoint_name(step)}", cfg, str(checkpoint),
                 {"method": arm, "seed": seed, "step": step, **(extra or {})})


def write_evaluation(target: Path, cfg: Config, checkpoint: str, extra: dict, progress: bool = True,
                     replicas: Replicas | None = None) -> None:
    """Evaluate `checkpoint` on every suite of `cfg` (its eval protocol; `replicas`: on Ray, as
    `harness eval --replicas`; responses kept beside `target`, eval_run.evaluate_beside) and write
    the record the report reads, {"checkpoint", **extra, "suites": {name: SuiteScore}}, atomically to `target`."""
    scores = evaluate_beside(target, cfg, checkpoint, replicas, progress=progress)
    write_json_atomic(target, {"checkpoint": checkpoint, **extra, "suites": {name: s.to_json() for name, s in scores.items()}})


def _run_verl(cfg: Config, arm: str, seed: int, folder: Path, verl: VerlOptions, base: str, budget: Budget,
              fractions, evaluate, log) -> None:
    """One run of a comparison as a verl job: run it unless it finished (attaching to its Ray job
    when one still runs), read its metrics back, and evaluate its HF checkpoints at matched spend.
    Its steps and checkpoint interval come from the budget (`plan_steps`)."""
    if not verl_job.finished(folder):
        job = verl_job.prepare(cfg, arm, folder, verl, plan=plan_steps(cfg), log=log)
        log(f"training {arm} (train.seed={cfg.train.seed}) on verl: {verl.nodes} x {verl.gpus_per_node} GPUs")
        verl_job.run(job, folder, verl, log=log)
    verl_job.import_verl_run(folder)
    rows = read_metrics(folder / METRICS_FILE)
    evaluate_points(folder, rows, budget, fractions, arm, seed, cfg, evaluate, log, extra={"backend": "verl"})
