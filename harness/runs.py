"""The layout of runs on disk, shared by the jobs that write them and the report that reads them:
folder and file names, the metrics file, budgets and the matched-spend rule, and atomic writes (a
reader, or an interrupted run, never sees a half-written result file)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.config.errors import UserError


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, fsync, then rename over `path`."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to a temporary file beside `path`, fsync, then rename over `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# --- a training run (`harness train`) ------------------------------------------------------------

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"
METRICS_FILE = "metrics.jsonl"

TIMING_KEYS = ("wall_s", "cpu_s", "gen_s", "score_s", "train_s", "step_s", "gen_samples_per_s", "train_tokens_per_s", "weight_sync_s",
               "old_logprob_s", "ref_logprob_s", "update_s", "probe_s", "probe_cpu_s", "loadavg_1m", "cpu_wait_s")
"""Metric fields that measure time (or the machine's load while it passed): they differ between
otherwise identical runs."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint folder under out/checkpoints, if any."""
    folder = out / CHECKPOINTS
    if not folder.is_dir():
        return None
    done = sorted(p for p in folder.glob("step_*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


VERL_DIR = "verl"
"""A `--backend verl` run folder's subfolder for verl's files (harness/jobs/train_verl.py)."""


def verl_hf_checkpoint(checkpoints: Path, step: int) -> Path:
    """The HF-format actor weights verl saves of `step` in its `trainer.default_local_dir` (its
    `_save_checkpoint`, with `checkpoint.save_contents` containing hf_model)."""
    return Path(checkpoints) / f"global_step_{step}" / "actor" / "huggingface"


def kept_steps(run: Path) -> set[int]:
    """The steps of a run folder that have a checkpoint to evaluate: the harness's own
    (checkpoints/step_NNNNNN/) and, for a verl run, verl's HF checkpoints
    (verl/checkpoints/global_step_N/actor/huggingface/ with its config.json)."""
    run = Path(run)
    steps = {int(p.name.split("_")[1]) for p in (run / CHECKPOINTS).glob("step_*") if p.is_dir()}
    for folder in (run / VERL_DIR / CHECKPOINTS).glob("global_step_*"):
        step = int(folder.name.rsplit("_", 1)[1])
        if (verl_hf_checkpoint(folder.parent, step) / "config.json").is_file():
            steps.add(step)
    return steps


def read_metrics(path: Path) -> list[dict]:
    """Metric lines of a run; a torn last line (the process died mid-write) is ignored."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


BUDGET_KINDS = {
    "steps": "RL steps",
    "wall_s": "wall-clock seconds of training",
    "cpu_s": "CPU seconds of training (the training process and its scoring workers)",
    "samples": "generated samples",
    "tokens": "generated tokens",
}
"""What a budget can count, in words (the tables name the kind with it)."""

BUDGET_FIELDS = {"steps": "step", "wall_s": "wall_s", "cpu_s": "cpu_s", "samples": "samples_generated", "tokens": "tokens_generated"}
"""The metrics field each budget kind reads (cumulative over the run)."""


@dataclass(frozen=True)
class Budget:
    """How much an arm may spend: RL steps, wall-clock or CPU seconds, generated samples or tokens."""

    kind: Literal["steps", "wall_s", "cpu_s", "samples", "tokens"]
    amount: float

    def used(self, row: dict | None) -> float:
        """Spent so far, read off the newest metrics row."""
        if row is None:
            return 0.0
        return float(row[BUDGET_FIELDS[self.kind]])

    def point(self, fraction: float) -> float:
        """The spend at `fraction` of the budget, rounded so that 0.29 x 100 steps is 29, not 28.99..."""
        return round(fraction * self.amount, 9)


# --- a comparison (`harness compare`) ---------------------------------------------------------

ARMS = "arms"
EVALS = "evals"
BASE_RECORD = "bootstrap.json"
"""The base checkpoint's training record (rl_steps, early_rl_step, its curve); the comparison keeps a copy."""


SPEND_RULE = "last checkpoint at or under each point"
"""Which checkpoint serves an evaluation point (`point_steps`); recorded in config.json, because
folders written before it evaluated the first step that passed each point."""


def run_dir(out: Path, arm: str, seed: int) -> Path:
    return out / ARMS / arm / f"seed{seed}"


def eval_points(fractions) -> list[float]:
    """The budget fractions evaluated: the configured ones and always the end (1.0), ascending."""
    return sorted({float(f) for f in fractions} | {1.0})


class SpendError(UserError):
    """A budget point that only the base could stand for although the arm had steps at or under it:
    no checkpoint was kept there (too few saves). Never answered by evaluating the base instead."""


def point_steps(rows: list[dict], budget: Budget, fractions, kept=None, arm: str = "the arm",
                stopped_at_budget: bool = False) -> dict[float, int | None]:
    """RL step evaluated for each point of one run, from its metrics: matched spend, the last step
    whose spend is at or under fraction x budget, never the step that passed it; None while no step
    has reached the point yet (the run is unfinished).

    The base (0) stands for a point only when the run's first step already passed it. `kept`: the
    steps with a checkpoint (a verl run keeps one every trainer.save_freq steps; `run_training`
    keeps one at each point): the nearest of them at or under the point is taken, and its actual
    spend is what the tables show. A point with steps at or under it but none kept would fall to the
    base for lack of saves: a `SpendError` naming `arm`, the point and the saved steps.
    `stopped_at_budget`: the run was stopped because its next step would pass the budget (verl's
    budget watcher), so no row passes the last point and yet every point is reached."""
    return {f: point_step(rows, budget, f, kept, arm, stopped_at_budget) for f in eval_points(fractions)}


def point_step(rows: list[dict], budget: Budget, fraction: float, kept=None, arm: str = "the arm",
               stopped_at_budget: bool = False) -> int | None:
    """`point_steps` of one budget fraction."""
    mark = budget.point(fraction)
    if not stopped_at_budget and not any(budget.used(row) >= mark for row in rows):
        return None
    under = [row["step"] for row in rows if budget.used(row) <= mark]
    if not under:
        return 0
    if kept is None:
        return max(under)
    served = [step for step in under if step in kept]
    if not served:
        raise SpendError(
            f"{arm}: budget point {fraction:g} ({mark:g} {budget.kind}) falls after step {max(under)}, but no checkpoint at "
            f"or under it was kept (saved steps: {sorted(kept) if kept else 'none'}); the base would stand for it. Save "
            "more often (train.save_every at most the step of the first point; `harness compare` picks such an "
            "interval when train.save_every is not given)")
    return max(served)


# --- a sweep over N (`harness sweep`) ---------------------------------------------------------------

SWEEP_RUNS = "runs"


def sweep_run_dir(out: Path, n: int, seed: int) -> Path:
    """The `harness train` folder of one sweep run: N rollouts per prompt, train.seed `seed`."""
    return out / SWEEP_RUNS / f"n{n}" / f"seed{seed}"


def sweep_eval_path(out: Path, n: int, seed: int) -> Path:
    """The evaluation of that run's checkpoint at the budget's end (matched spend)."""
    return out / EVALS / f"n{n}-seed{seed}.json"


def sweep_base_eval_path(out: Path) -> Path:
    """The base's evaluation in a sweep: written only when a run's first step passed the budget (that
    run then has no step within it, and the base is shown as its own row, never under an N)."""
    return out / EVALS / "base.json"


# --- a base checkpoint (`harness bootstrap`) ---------------------------------------------------

EARLY = "early"
"""Subfolder with the RL phase's earlier checkpoint (the first baseline row, as the paper's 2,000
steps beside 3,000)."""


# --- a toy simulation (`harness simulate`) -----------------------------------------------------

SIM_RESULT_FILE = "simulation.json"
"""Settings, the per-N table and per-step series, provenance: what the figure is drawn from."""
SIM_TABLE_FILE = "table.md"
"""The per-N tables as printed."""
SIM_FIGURE_FILE = "simulation.png"
"""The paper's three panels and the project's mass-balance panels."""

# --- an evaluation (`harness eval`; its layout: harness/jobs/eval_store.py) --------------------------

EVAL_MANIFEST = "manifest.json"
EVAL_KIND = "harness eval"
"""The manifest's `kind` in an evaluation folder."""


# --- which command wrote a folder (for the one-line errors) ----------------------------------------

COMPARISON_KEYS = ("arms", "seeds", "budget", "suites")
"""Keys every `harness compare` config.json has."""

RUN_KEYS = ("recipe", "arm", "budget", "config")
"""Keys every `harness train` config.json has."""

SWEEP_KEYS = ("ns", "seeds", "budget", "samples_per_step")
"""Keys every `harness sweep` config.json has."""

FOLDER_KINDS = {
    "missing": "a folder that does not exist",
    "file": "a file, not a folder",
    "empty": "an empty folder",
    "comparison": "a `harness compare` folder",
    "sweep": "a `harness sweep` folder",
    "evaluation": "a `harness eval` folder",
    "train run": "a `harness train` run's folder",
    "checkpoint": "a model checkpoint (save_pretrained)",
    "broken": "a half-written folder (its config.json is not a valid JSON object)",
    "other": "a folder no harness command wrote",
}
"""What `folder_kind` tells apart, as the errors name it."""


def read_record(path: Path) -> dict | None:
    """A JSON object file; None when it is missing, not valid JSON (torn, damaged) or not an object."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def folder_kind(folder: Path) -> str:
    """Which command wrote `folder`, read from its config.json (a key of FOLDER_KINDS): a command
    given another's folder names what it was given, not only what it expected."""
    folder = Path(folder)
    if not folder.exists():
        return "missing"
    if not folder.is_dir():
        return "file"
    if not any(folder.iterdir()):
        return "empty"
    if not (folder / "config.json").is_file():
        if (read_record(folder / EVAL_MANIFEST) or {}).get("kind") == EVAL_KIND:
            return "evaluation"
        return "train run" if (folder / METRICS_FILE).is_file() else "other"
    meta = read_record(folder / "config.json")
    if meta is None:
        return "broken"
    if set(COMPARISON_KEYS) <= set(meta):
        return "comparison"
    if set(SWEEP_KEYS) <= set(meta):
        return "sweep"
    if set(RUN_KEYS) <= set(meta):
        return "train run"
    return "checkpoint" if "model_type" in meta else "other"


def describe_folder(folder: Path) -> str:
    """`folder_kind` in words: 'a `harness train` run's folder', 'an empty folder', ..."""
    return FOLDER_KINDS[folder_kind(folder)]
