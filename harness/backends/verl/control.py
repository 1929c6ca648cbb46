"""A verl run's control files and Ray jobs, light enough for the watcher process to start in a second.

What harness/jobs/train_verl.py (which runs the segments) and harness/backends/verl/watch.py (the
watcher) share: the run folder's records (verl/jobs.json: every Ray job submitted, written before
the submission; verl/budget_stop.json: the watcher's stop at the budget), Ray's view of a job
(`ray job submit/stop` through Ray's CLI, status and logs through its job-submission client), the
metrics read back (`verl_rows`) and the budget decision (`decide`). It imports no model code, and
Ray only when a job is asked about (ray[default] is needed only to run on a Ray cluster).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.backends.verl.compile import CHECKPOINT_TRACKER, VerlJob, segment_metrics
from harness.backends.verl.metrics import attempt_files, harness_rows, read_segment_logs
from harness.config import ConfigError
from harness.runs import CHECKPOINTS, VERL_DIR, Budget, kept_steps, read_record, write_json_atomic

VERL = VERL_DIR
"""The run folder's subfolder for verl's files."""

METRICS_DIR = "metrics"
"""verl/'s subfolder of the segments' file-logger files (`segment_metrics`)."""


JOBS_FILE = "jobs.json"
"""verl/'s record of every submitted Ray job, newest last."""


BUDGET_STOP = "budget_stop.json"
"""verl/'s record of the watcher's stop at the budget: the run is finished."""


TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
"""Ray job states after which a job does nothing more."""



class VerlJobError(RuntimeError):
    """A verl job failed; the message names it and ends with the tail of its log."""



def saved_through(job: VerlJob) -> int:
    """The last step verl's checkpoint tracker records (0: nothing saved yet)."""
    try:
        return int((job.checkpoints / CHECKPOINT_TRACKER).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0



def budget_stop(out: Path) -> dict | None:
    """The watcher's record of its stop at the budget, if it stopped this run."""
    return read_record(out / VERL / BUDGET_STOP)



def finished(out: Path) -> bool:
    """True when the run needs no more verl: the watcher stopped it at its budget, or verl saved the
    last segment's last step."""
    meta = read_record(out / "config.json") or {}
    segments = meta.get("verl", {}).get("segments") or []
    if budget_stop(out) is not None:
        return True
    tracker = Path(meta.get("verl", {}).get("checkpoints", out / VERL / CHECKPOINTS)) / CHECKPOINT_TRACKER
    try:
        return bool(segments) and int(tracker.read_text().strip() or 0) >= segments[-1]["last_step"]
    except (OSError, ValueError):
        return False



def job_records(out: Path) -> list[dict]:
    """verl/jobs.json: every Ray job submitted for this run, oldest first."""
    record = read_record(out / VERL / JOBS_FILE)
    return list(record.get("jobs", [])) if record else []



def record_job(out: Path, entry: dict) -> None:
    """Add or replace (by submission id) one job's record in verl/jobs.json, atomically."""
    jobs = [j for j in job_records(out) if j.get("submission_id") != entry["submission_id"]]
    write_json_atomic(out / VERL / JOBS_FILE, {"jobs": [*jobs, entry]})



def ray_cli() -> str:
    """The `ray` command beside this interpreter (its venv), else on PATH."""
    here = Path(sys.executable).parent / "ray"
    found = str(here) if here.is_file() else shutil.which("ray")
    if not found:
        raise ConfigError("`ray` is not installed here: --address submits each segment with `ray job submit` "
                          "(pip install 'ray[default]')")
    return found



def ray_job(action: str, address: str, submission_id: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """`ray job ACTION --address ADDRESS [ARGS] ID`, its output captured (bounded by `timeout`)."""
    return subprocess.run([ray_cli(), "job", action, f"--address={address}", *args, submission_id],
                          capture_output=True, text=True, timeout=timeout)



def _client(address: str):
    """Ray's job-submission client of `address` (what `ray job status/logs` use)."""
    try:
        from ray.job_submission import JobSubmissionClient  # lazy: ray is needed only to run on a Ray cluster
    except ImportError:
        raise ConfigError("ray is not installed here: --address submits each segment as a Ray job "
                          "(pip install 'ray[default]')") from None
    return JobSubmissionClient(address)



def job_status(address: str, submission_id: str) -> str:
    """Ray's status of a submitted job: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED, or MISSING
    (Ray does not know it: never submitted, or the cluster was restarted)."""
    try:
        return str(_client(address).get_job_status(submission_id).value)
    except RuntimeError as exc:
        if "404" in str(exc) or "does not exist" in str(exc):
            return "MISSING"
        raise



def log_tail(address: str, submission_id: str, lines: int = 20) -> str:
    """The last `lines` lines of a Ray job's log."""
    try:
        text = _client(address).get_job_logs(submission_id)
    except RuntimeError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.rstrip().splitlines()[-lines:])



def verl_rows(out: Path, meta: dict, torn_ok: bool = False) -> list[dict]:
    """The harness's rows of the verl run in `out` (config.json's contents as `meta`)."""
    logs = [(s["first_step"], s["last_step"], segment_metrics(out / VERL / METRICS_DIR, s["index"]))
            for s in meta["verl"]["segments"]]
    if not attempt_files(logs[0][2]):
        raise ConfigError(f"'{logs[0][2]}' does not exist: the verl run has not logged a step yet")
    arm = meta["arm"]
    return harness_rows(read_segment_logs(logs, torn_ok=torn_ok), n=arm["n"], prompts_per_step=arm["prompts_per_step"],
                        source=str(out / VERL / METRICS_DIR))



def run_budget(meta: dict) -> Budget:
    """The budget a run folder's config.json records."""
    return Budget(meta["budget"]["kind"], float(meta["budget"]["amount"]))



def save_steps(meta: dict) -> list[int]:
    """The steps verl saves a checkpoint of in the run `meta` (config.json) describes: every
    save_every-th step and each segment's last step (its fit(): is_last_step)."""
    every = int(meta["budget"].get("save_every") or 0)
    last = meta["verl"]["segments"][-1]["last_step"]
    ends = {seg["last_step"] for seg in meta["verl"]["segments"]}
    return sorted(ends | (set(range(every, last + 1, every)) if every > 0 else set()))



def decide(out: Path) -> dict | None:
    """The watcher's decision on the run in `out`, from the metrics verl has written so far: a stop
    record once the next step would pass the budget (the last step's own spend taken as the next
    one's) and verl's checkpoint of its last save at or under the current step exists (verl saves a
    step before it logs it; an asynchronous save is waited for); None to let it run on. A required
    key missing from the metrics is a `MetricsError`, as when they are imported."""
    meta = read_record(out / "config.json")
    if meta is None or meta.get("budget", {}).get("kind") in (None, "steps"):
        return None
    budget = run_budget(meta)
    try:
        rows = verl_rows(out, meta, torn_ok=True)
    except ConfigError as exc:
        if "has not logged a step yet" in str(exc):
            return None
        raise
    if not rows:
        return None
    last = rows[-1]
    spent = budget.used(last)
    step_cost = spent - (budget.used(rows[-2]) if len(rows) > 1 else 0.0)
    if spent + step_cost <= budget.amount:
        return None
    saves = [step for step in save_steps(meta) if step <= last["step"]]
    checkpoint = saves[-1] if saves else None
    if checkpoint is not None and checkpoint not in kept_steps(out):
        return None  # verl is still writing it
    return {"reason": f"step {last['step']} spent {spent:g} of {budget.amount:g} {budget.kind} and the next (~{step_cost:g}) "
                      "would pass it", "step": last["step"], "spent": spent, "kind": budget.kind, "amount": budget.amount,
            "checkpoint_step": checkpoint}


def stop_at_budget(out: Path, address: str | None, submission_id: str, log=print) -> dict | None:
    """Stop the job `submission_id` when `decide` says so: the stop recorded in verl/budget_stop.json
    first (the run is then finished, whoever sees the job end), then `ray job stop` (with an
    address; without one the caller ends its own process). The stop record, or None."""
    stop = decide(out)
    if stop is None:
        return None
    if budget_stop(out) is None:
        write_json_atomic(out / VERL / BUDGET_STOP, {**stop, "job": submission_id})
    log(f"job {submission_id}: {stop['reason']}; stopping it")
    if address:
        done = ray_job("stop", address, submission_id, timeout=600)
        log((done.stdout + done.stderr).strip().splitlines()[-1:] or "")
    return stop


def watch(run: Path, address: str, job: str, poll_s: float, log=print) -> int:
    """The watcher's loop: look at the metrics every `poll_s` seconds while `job` runs, stop it at the
    budget (`stop_at_budget`); 0 once the job has ended (stopped here or by itself). The metrics are
    looked at once more after the job ended by itself, so a watcher that started late still records
    a budget the finished job passed."""
    while True:
        state = job_status(address, job)
        if stop_at_budget(run, address if state not in TERMINAL else None, job, log=log) is not None or state in TERMINAL \
                or state == "MISSING":
            log(f"job {job}: {state}")
            return 0
        time.sleep(poll_s)
