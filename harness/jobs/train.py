"""`harness train RECIPE`: one RL arm from the profile's base checkpoint, with exact resume.

    harness train prorl --profile tiny --out runs/prorl          # train.steps=... to change the budget
    harness train prorl --profile tiny --out runs/prorl --resume # continue after an interruption

Writes, under the output folder:
- `config.json`: the resolved config and the arm's derived settings (n, prompts, learning rate);
- `metrics.jsonl`: one JSON line per RL step (the same scalars go to TensorBoard under `tb/`);
- `checkpoints/step_NNNNNN/`: `save_pretrained` weights and tokenizer plus `trainer_state.pt`
  (optimizer, scheduler, reference policy, RNG states, data position), every `train.save_every`
  steps and at the end; and, without `trainer_state.pt`, the evaluation checkpoints of matched
  spend (the last step at or under each budget point, see `run_training`). Each checkpoint is
  written to a temporary folder and renamed, so a checkpoint that exists is complete.

`--resume` loads the newest checkpoint, drops metric lines written after it, and continues; the
final weights and the non-timing metrics equal those of an uninterrupted run. A folder it cannot
continue (another command's, an empty or a half-written one) is refused in one line, before anything
is written (`check_out`).

SIGINT / SIGTERM: the first one lets the current step finish, saves a checkpoint and exits (130);
a second one stops at once (the newest checkpoint is still complete, and resume starts there).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harness import provenance
from harness.checkpoint import CheckpointError, check_checkpoint, load_policy
from harness.config import Config, ConfigError, to_dict
from harness.execution import cpu
from harness.jobs.base_model import base_checkpoint
from harness.jobs.trackers import Trackers, check_trackers
from harness.runs import (
    CHECKPOINTS,
    METRICS_FILE,
    STATE_FILE,
    Budget,
    checkpoint_name,
    describe_folder,
    folder_kind,
    latest_checkpoint,
    read_metrics,
    write_json_atomic,
    write_text_atomic,
)
from harness.stats import welch_test
from suites import build_suite
from trainers.base import Trainer
from trainers.registry import get_builder


class StopRequest:
    """Turns the first SIGINT/SIGTERM into a request to stop after the current step."""

    def __init__(self):
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def check_requirements(cfg: Config) -> None:
    """Refuse, in one line and before anything is loaded or downloaded, a profile whose training
    needs CUDA (`requires: cuda`) on a machine without a CUDA GPU."""
    if cfg.requires == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"profile '{cfg.profile}' needs CUDA GPUs to train (requires: cuda: {cfg.base.checkpoint or 'its model'} "
                          f"with the {cfg.rollout.engine} engine) and this machine has none; "
                          f"`harness plan --profile {cfg.profile}` prints what a run needs")


class TrainingClock:
    """Training time of a run so far, wall-clock and CPU (`harness.execution.cpu.tree_cpu_s`: this
    process, its scoring workers and what they start), with the sections that are not training left
    out (`excluded`: checkpoint copies and writes; `exclude`: the ΔQ_pos probe the trainer timed),
    continued from the values a resumed run had reached. `cpu_before` None: no CPU meter (a run
    resumed from a checkpoint written before cpu_s was recorded, or a machine without one)."""

    def __init__(self, wall_before: float = 0.0, cpu_before: float | None = 0.0):
        self.wall_before, self.cpu_before = wall_before, cpu_before
        self.metered = cpu_before is not None
        self._wall0, self._cpu0 = time.perf_counter(), cpu.tree_cpu_s() if self.metered else 0.0
        self._wall_out = self._cpu_out = 0.0

    @contextmanager
    def excluded(self):
        """A section that is neither training time nor training CPU."""
        wall, used = time.perf_counter(), cpu.tree_cpu_s() if self.metered else 0.0
        try:
            yield
        finally:
            self._wall_out += time.perf_counter() - wall
            if self.metered:
                self._cpu_out += cpu.tree_cpu_s() - used

    def exclude(self, wall_s: float, cpu_s: float = 0.0) -> None:
        """Leave out a section measured elsewhere (the trainer's probe_s, probe_cpu_s)."""
        self._wall_out += wall_s
        self._cpu_out += cpu_s

    def wall_s(self) -> float:
        return self.wall_before + time.perf_counter() - self._wall0 - self._wall_out

    def cpu_s(self) -> float | None:
        if not self.metered:
            return None
        return self.cpu_before + cpu.tree_cpu_s() - self._cpu0 - self._cpu_out


CPU_BUDGET_THREADS = 1
"""torch's intra-op threads while a `cpu_s` budget meters training, unless `torch_threads` is set.
Several threads wait for each other at every parallel region's end, spinning on a core; on a busy
machine a sibling waits for a core, and the spinning is charged to the run: the same smoke step cost
6.2-8.0 CPU s beside one CPU hog against 1.8-2.3 alone with 2 threads, and 1.4-1.7 both ways with
one (results/experiments/2026-12-06-cpu-budget-one-thread.md). One thread meets no barrier."""


@contextmanager
def training_threads(cfg: Config, budget: Budget, log=print):
    """Run the body with `CPU_BUDGET_THREADS` torch threads under a `cpu_s` budget (a user's
    `torch_threads` stands, with a warning when it is above one), torch's setting restored after;
    other budget kinds leave the threads alone. Yields the thread count training ran with."""
    before = torch.get_num_threads()
    if budget.kind != "cpu_s":
        yield before
        return
    if cfg.torch_threads > 1:
        log(f"warning: torch_threads={cfg.torch_threads} under a cpu_s budget: threads that wait for each other spin, "
            "so a busy machine charges the run more CPU per step (torch_threads=0 trains on one thread)")
    threads = cfg.torch_threads or CPU_BUDGET_THREADS
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def load_average() -> float | None:
    """The machine's 1-minute load average (runnable and uninterruptible tasks, all processes), if
    the system has one: recorded beside each step to say how busy the machine was."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def revision_of(cfg: Config, checkpoint: str) -> str:
    """The hub revision to load `checkpoint` at: the profile's `base.revision` for its base checkpoint."""
    return cfg.base.revision if checkpoint == cfg.base.checkpoint else ""


def run_training(cfg: Config, recipe: str, out: Path, resume: bool = False, base: str | None = None,
                 progress: bool = True, log=print, budget: Budget | None = None,
                 checkpoint_fractions: tuple[float, ...] = (), restart: bool = True) -> Path:
    """Train one arm until its budget is spent (default: `cfg.train.steps` steps); returns the final
    checkpoint folder. `out` is checked first (`check_out`; `restart` as there).

    Matched spend: for each point p of `checkpoint_fractions` x budget and the budget itself, the
    last step whose spend is at or under p keeps a checkpoint (`harness compare` evaluates it), so
    no evaluated checkpoint has more training than its point allows. The step that passes p is
    only known once it has run; the weights from before it are then written from a copy kept in
    memory (weights and tokenizer only: an evaluation checkpoint, not a resume point). The
    metrics' `wall_s` and `cpu_s` are training time (`TrainingClock`): those copies, every
    checkpoint write and the ΔQ_pos probe (`train.probe_every`, its `probe_s`) are left out, so
    an arm with more (shorter) steps is not charged more for them under a wall-clock or CPU budget.
    Each row also records `loadavg_1m`, the machine's load after the step (`load_average`), and
    `cpu_wait_s`, the seconds this run's processes waited for a CPU during it (`cpu.tree_wait_s`:
    other work taking the cores; the load average counts the run's own tasks too)."""
    check_requirements(cfg)
    check_trackers(cfg)  # before anything is written
    budget = budget or Budget("steps", cfg.train.steps)
    if budget.kind == "cpu_s" and not cpu.available():
        raise ConfigError("invalid value for 'compare.budget_kind': 'cpu_s' needs the CPU time of the scoring workers, which "
                          "this system does not show (no /proc, psutil not installed); install psutil, or use wall_s, "
                          "samples, tokens or steps")
    try:
        builder = get_builder(cfg.train.trainer)
    except ValueError as exc:
        raise ConfigError(f"invalid value for 'train.trainer': {exc}") from None
    last = check_out(out, resume, restart)
    out.mkdir(parents=True, exist_ok=True)
    with training_threads(cfg, budget, log) as threads:
        return _train(cfg, builder, recipe, out, last, resume, base, progress, log, budget, checkpoint_fractions, threads)


def _train(cfg: Config, builder, recipe: str, out: Path, last: Path | None, resume: bool, base: str | None, progress: bool, log,
           budget: Budget, checkpoint_fractions: tuple[float, ...], threads: int) -> Path:
    """The body of `run_training`, its arguments checked; `threads`: torch's threads meanwhile (recorded)."""
    metrics_path = out / METRICS_FILE

    if base is None:
        base = base_checkpoint(cfg, progress=progress, log=log)
    # fp32 master weights (train.dtype) whatever the generation precision (rollout.dtype)
    start = str(last or base)
    model, tokenizer = load_policy(start, cfg.rollout.device, cfg.train.dtype, revision=revision_of(cfg, start))

    suites = [build_suite(name, cfg.suites, cfg.seed, cfg.resolved_cache_dir()) for name in cfg.suites.enabled]
    trainer = builder(train=cfg.train, rollout=cfg.rollout, scoring=cfg.scoring, seed=cfg.seed, model=model, tokenizer=tokenizer,
                      suites=suites)
    if not isinstance(trainer, Trainer):
        missing = [m for m in ("name", "policy", "settings", "step", "state_dict", "load_state_dict") if not hasattr(trainer, m)]
        raise ConfigError(f"invalid value for 'train.trainer': {cfg.train.trainer!r} built a {type(trainer).__name__} without "
                          f"{', '.join(missing)} (trainers.base.Trainer)")
    wall_before, cpu_before = 0.0, (0.0 if cpu.available() else None)
    if last is not None:
        state = torch.load(last / STATE_FILE, weights_only=False)
        trainer.load_state_dict(state["trainer"])
        wall_before = state["wall_s"]
        # a checkpoint written before cpu_s was recorded: the resumed steps record none either
        # (a cpu_s budget cannot have written it: that kind came with the meter)
        cpu_before = state.get("cpu_s") if cpu_before is not None else None
        if budget.kind == "cpu_s" and cpu_before is None:
            raise ConfigError(f"cannot --resume '{out}' under a cpu_s budget: its checkpoint {last.name} records no CPU "
                              "seconds (written by an older harness); continue it with the budget kind it was started with")
        log(f"resuming from {last} (step {trainer.step_count})")
    kept = [row for row in read_metrics(metrics_path) if row["step"] <= trainer.step_count]
    for stale in (out / CHECKPOINTS).glob("step_*") if resume else ():
        if int(stale.name.split("_")[1]) > trainer.step_count:  # evaluation checkpoints of the replayed steps
            shutil.rmtree(stale, ignore_errors=True)
    write_text_atomic(metrics_path, "".join(json.dumps(row) + "\n" for row in kept))
    write_json_atomic(out / "config.json", {
        "recipe": recipe,
        "base_checkpoint": base,
        "arm": trainer.settings(),
        "budget": {"kind": budget.kind, "amount": budget.amount},
        "torch_threads": threads,
        "config": to_dict(cfg),
        "provenance": provenance.collect(seed=cfg.seed),
    })

    from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard takes a second to import; only training writes it

    writer = SummaryWriter(str(out / "tb"), purge_step=trainer.step_count + 1)
    trackers = Trackers(cfg, out, f"{cfg.profile}-{recipe}")
    marks = sorted({budget.point(f) for f in checkpoint_fractions if 0 < f < 1} | {budget.amount})
    spent = budget.used(kept[-1] if kept else None)
    if last is not None and spent >= budget.amount:
        log(f"budget already spent ({budget.amount:g} {budget.kind}, {trainer.step_count} steps); nothing to do")
    bar = tqdm(total=budget.amount, initial=min(spent, budget.amount), desc=f"train {recipe}", unit=budget.kind,
               disable=not progress, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} [{elapsed}<{remaining}]")
    clock = TrainingClock(wall_before, cpu_before)  # checkpoint copies and writes, the probe: not charged
    waits = cpu.wait_available()  # each step's CPU wait (cpu_wait_s): how busy the machine was for this run
    # a budget of whole steps lands on each whole-step point exactly: no step ever passes one
    needs_snapshots = not (budget.kind == "steps" and all(float(m).is_integer() for m in marks))
    final = last
    try:
        with StopRequest() as stop, metrics_path.open("a") as sink:
            while spent < budget.amount:
                previous = trainer.step_count
                # the weights before this step, in case it passes a point and `previous` has no checkpoint
                snapshot = None
                with clock.excluded():
                    if needs_snapshots and previous > 0 and not (out / CHECKPOINTS / checkpoint_name(previous)).is_dir():
                        snapshot = weights_snapshot(trainer.policy)
                waited = cpu.tree_wait_s() if waits else 0.0
                row = trainer.step()
                clock.exclude(row.get("probe_s", 0.0), row.get("probe_cpu_s", 0.0))  # train.probe_every: a measurement
                row["wall_s"] = clock.wall_s()
                if clock.metered:
                    row["cpu_s"] = clock.cpu_s()
                if waits:
                    row["cpu_wait_s"] = cpu.tree_wait_s() - waited
                load = load_average()
                if load is not None:
                    row["loadavg_1m"] = load
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                os.fsync(sink.fileno())
                for key, value in row.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                        writer.add_scalar(key, value, row["step"])
                trackers.log(row)
                before, spent = spent, budget.used(row)
                bar.update(min(spent, budget.amount) - min(before, budget.amount))
                bar.set_postfix(step=row["step"], reward=f"{row['reward_mean']:.3f}", ds=f"{row['ds_pass_rate']:.2f}")
                step = trainer.step_count
                with clock.excluded():
                    if snapshot is not None and any(before <= m < spent for m in marks):
                        save_weights(out, previous, trainer.policy, snapshot, tokenizer)
                    at_point = any(spent == m for m in marks)  # the last step at or under that point
                    periodic = cfg.train.save_every and step % cfg.train.save_every == 0
                    if spent >= budget.amount or stop.requested or at_point or periodic:
                        final = save_checkpoint(out, trainer, tokenizer, row["wall_s"], row.get("cpu_s"))
                if stop.requested and spent < budget.amount:
                    log(f"stopped after step {step}: checkpoint {final}; continue with --resume")
                    raise KeyboardInterrupt
    finally:
        bar.close()
        writer.close()
        trackers.close()
    return final if final is not None else save_checkpoint(out, trainer, tokenizer, wall_before, cpu_before)


def check_out(out: Path, resume: bool, restart: bool = True) -> Path | None:
    """The checkpoint a resume of `out` starts from (None: the base); refuses in one line, before
    anything is written, a folder `run_training` cannot use. Without `resume`: a folder that holds a
    run or another command's output. With it: a folder that holds no `harness train` run (empty, a
    comparison, a checkpoint), a damaged one (config.json not valid JSON, a checkpoint without its
    weights) and, unless `restart`, one with metric lines but no resume checkpoint (`harness train
    --resume` refuses it; `harness compare` restarts an arm stopped before its end from the base)."""
    metrics_path = out / METRICS_FILE
    if not resume:
        if metrics_path.exists():
            raise ConfigError(f"output folder '{out}' already holds a run; pass --resume to continue it, or choose another --out")
        if (out / "config.json").exists():
            raise ConfigError(f"output folder '{out}' is {describe_folder(out)}, not a `harness train` run; choose another --out")
        return None
    kind = folder_kind(out)
    if kind == "comparison":
        raise ConfigError(f"cannot --resume '{out}' with `harness train`: it is a `harness compare` folder; continue it with "
                          f"`harness compare ARM ARM --out {out} --resume`")
    if not metrics_path.exists():
        raise ConfigError(f"nothing to resume in '{out}': it holds no `harness train` run ({METRICS_FILE} is missing: it is "
                          f"{describe_folder(out)}); run without --resume to start one there")
    if kind == "broken":
        raise ConfigError(f"cannot --resume '{out}': its config.json is not valid JSON (a half-written or damaged run); "
                          "start the run again with another --out")
    if kind != "train run":
        raise ConfigError(f"cannot --resume '{out}': it is {describe_folder(out)}, not a `harness train` run; "
                          "start the run again with another --out")
    for checkpoint in sorted((out / CHECKPOINTS).glob("step_*")):
        try:
            check_checkpoint(str(checkpoint))
        except CheckpointError as exc:
            raise CheckpointError(f"cannot --resume '{out}' (a half-written or damaged run): {exc}") from None
    last = latest_checkpoint(out)
    steps = len(read_metrics(metrics_path))
    if last is None and steps and not restart:
        raise ConfigError(f"cannot --resume '{out}': its {METRICS_FILE} has {steps} steps but no complete checkpoint to "
                          f"continue from ({CHECKPOINTS}/step_NNNNNN/ with {STATE_FILE}): a half-written run, or one stopped "
                          "before its first checkpoint; start it again with another --out")
    return last


def learning_summary(rows: list[dict]) -> dict:
    """Did the run's training reward rise? Mean reward over the first and the last 20% of steps (at
    least one step each), and Welch's test of last - first over those steps' rewards (no interval
    with one step per window). Steps are not independent draws, so read the interval as the
    step-to-step noise of this run, not as a guarantee."""
    k = max(1, len(rows) // 5)
    first = [r["reward_mean"] for r in rows[:k]]
    last = [r["reward_mean"] for r in rows[-k:]]
    return {"steps": len(rows), "window": k, "reward_first_20pct": sum(first) / k,
            "reward_last_20pct": sum(last) / k, "last_minus_first": welch_test(first, last)}


def format_learning(summary: dict) -> str:
    """One line for the end of `harness train`."""
    k, test = summary["window"], summary["last_minus_first"]
    line = (f"mean training reward, first {k} of {summary['steps']} steps: {summary['reward_first_20pct']:.3f}; "
            f"last {k}: {summary['reward_last_20pct']:.3f}; "
            f"difference {summary['reward_last_20pct'] - summary['reward_first_20pct']:+.3f}")
    if test["ci95"] is None:
        return line + " (one step per window: no interval)"
    lo, hi = test["ci95"]
    return line + f" (95% CI [{lo:+.3f}, {hi:+.3f}] over steps, Welch p = {test['p_value']:.2g})"


def weights_snapshot(model) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's weights; tensors shared in the model (tied embeddings) stay shared."""
    copies: dict[int, torch.Tensor] = {}
    out = {}
    for name, t in model.state_dict().items():
        if t.data_ptr() not in copies:
            copies[t.data_ptr()] = t.detach().to("cpu", copy=True)
        out[name] = copies[t.data_ptr()]
    return out


def save_weights(out: Path, step: int, model, state_dict: dict[str, torch.Tensor] | None, tokenizer,
                 trainer_state: dict | None = None) -> Path:
    """checkpoints/step_NNNNNN: save_pretrained files (of `state_dict` if given, else the model's own
    weights), the tokenizer and, when given, the trainer state that makes it a resume point;
    written to a temporary folder and renamed into place when complete. Without trainer state it is
    an evaluation checkpoint of matched spend (resume never starts from it)."""
    folder = out / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / checkpoint_name(step)
    work = folder / f".{target.name}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    model.save_pretrained(work, state_dict=state_dict)
    tokenizer.save_pretrained(work)
    if trainer_state is not None:
        torch.save(trainer_state, work / STATE_FILE)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(work, target)
    return target


def save_checkpoint(out: Path, trainer, tokenizer, wall_s: float, cpu_s: float | None = None) -> Path:
    """A resume point: weights, tokenizer and trainer state (save_weights), with the training wall
    and CPU seconds reached (`cpu_s` None: not metered, not written)."""
    state = {"trainer": trainer.state_dict(), "wall_s": wall_s}
    if cpu_s is not None:
        state["cpu_s"] = cpu_s
    return save_weights(out, trainer.step_count, trainer.policy, None, tokenizer, trainer_state=state)
