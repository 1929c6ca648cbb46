"""`harness train RECIPE --backend verl`: one arm compiled to verl and run on Ray, read back as a run folder.

    harness train brorl --backend verl --profile prorlv2-1.5b --nodes 8 --gpus-per-node 8 --dry-run
    harness train brorl --backend verl --profile prorlv2-1.5b --nodes 8 --gpus-per-node 8 --address http://HEAD:8265

Layout of the run folder (`--out`):

    verl/command.sh        what runs the arm by hand: its segments in order, each one verl invocation
                           (verl's own entry point, Hydra overrides); one segment per reference
                           period of train.ref_reset_every (harness/backends/verl/compile.py)
    verl/overrides.txt     the overrides every segment shares, one per line, the user's
                           --verl-override last (each segment's own are in command.sh and config.json)
    verl/translation.md    what each recipe value became in verl, and what verl cannot express
    verl/data/train.parquet, verl/data/val.parquet   the suites' items in verl's layout
    verl/jobs.json         every Ray job submitted for the run (segment, attempt, submission id,
                           address, watcher pid), written before the job is submitted
    verl/budget_stop.json  written by the watcher when it stopped the run at its budget
    verl/metrics/segment<k>.jsonl   verl's file logger of segment k (earlier attempts: .attempt<j>.jsonl)
    verl/checkpoints/global_step_<step>/actor/huggingface/   verl's HF-format checkpoints (all segments)
    metrics.jsonl, config.json   the harness's run files, made from verl's (`import_verl_run`)

`--dry-run` writes the first four lines' files and runs nothing. Without it `run` runs the segments
in order: here (verl starts a local Ray) or each one a Ray job submitted to `--address`, its id
recorded first; the metrics are read back while it runs and after every segment, so `harness
report` renders a comparison mid-run. Every segment resumes from verl's last save
(`trainer.resume_mode=auto`): a segment that dies costs the steps since its last save. Running again
(`harness compare --resume`, or `harness train --backend verl` with the same --out) asks Ray for
the recorded job: a running one is attached to (no second job), a failed one is reported with the
tail of its log and its segment submitted again. Under a comparison's budget that is not whole
steps, a watcher (harness/backends/verl/watch.py) reads the metrics as verl writes them and stops the
job (`ray job stop`) once the next step would pass the budget.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness import provenance
from harness.backends.verl import compile as verl_compile
from harness.backends.verl import reward as verl_reward
from harness.backends.verl.control import (
    BUDGET_STOP,
    METRICS_DIR,
    TERMINAL,
    VERL,
    VerlJobError,
    budget_stop,
    decide,
    finished,
    job_records,
    job_status,
    log_tail,
    ray_cli,
    ray_job,
    record_job,
    saved_through,
    stop_at_budget,
    verl_rows,
)
from harness.backends.verl.data import write_data
from harness.backends.verl.metrics import MetricsError, next_attempt
from harness.config import Config, ConfigError, UserError, to_dict
from harness.jobs.base_model import base_checkpoint
from harness.runs import CHECKPOINTS, METRICS_FILE, kept_steps, read_record, write_json_atomic, write_text_atomic

__all__ = ["BUDGET_STOP", "METRICS_DIR", "VERL", "VerlJobError", "VerlOptions", "budget_stop", "finished", "hf_checkpoints",
           "import_verl_run", "job_records", "job_status", "log_tail", "prepare", "run", "submit_segment"]

@dataclass(frozen=True)
class VerlOptions:
    """Where and how verl runs (the `--backend verl` options of train and compare)."""

    nodes: int = 1
    """Nodes of the Ray cluster."""
    gpus_per_node: int = 8
    """GPUs per node."""
    address: str | None = None
    """Ray job-submission address (`ray job submit --address`); None runs here (verl starts a local Ray)."""
    dry_run: bool = False
    """Write the command, data and translation; run nothing."""
    overrides: tuple[str, ...] = ()
    """`--verl-override key=value`: Hydra overrides after the compiled ones."""
    entrypoint: tuple[str, ...] = verl_compile.VERL_MAIN
    """The program each segment runs before its overrides: verl's main_ppo (the tests give a stand-in)."""
    poll_s: float = 30.0
    """Seconds between two looks at a running job's status and metrics."""


def prepare(cfg: Config, recipe: str, out: Path, verl: VerlOptions, plan: verl_compile.StepPlan | None = None,
            log=print) -> verl_compile.VerlJob:
    """Compile the arm and write its verl files under out/verl (data when its sources can be read).
    `plan`: a comparison's budget for the arm (`verl_compile.plan_steps`): its steps, checkpoint
    interval and, when the budget is not whole steps, the watcher's budget."""
    folder = out / VERL
    model = cfg.base.checkpoint or base_checkpoint(cfg, progress=False, log=log)
    job = verl_compile.compile_arm(
        cfg, recipe, model=model, train_file=(folder / "data" / "train.parquet").resolve(),
        val_file=(folder / "data" / "val.parquet").resolve(), reward_module=Path(verl_reward.__file__).resolve(),
        checkpoints=(folder / CHECKPOINTS).resolve(), metrics_dir=(folder / METRICS_DIR).resolve(), nodes=verl.nodes,
        gpus_per_node=verl.gpus_per_node, experiment=f"{cfg.profile}-{recipe}", address=verl.address, plan=plan,
        extra_overrides=tuple(verl.overrides), tensorboard_dir=(out / "tb").resolve())
    job.entrypoint = list(verl.entrypoint)
    (folder / METRICS_DIR).mkdir(parents=True, exist_ok=True)  # verl's FileLogger creates the file, not its folder
    if cfg.base.checkpoint and cfg.base.revision:
        job.not_expressed.append(
            f"base.revision={cfg.base.revision}: verl loads actor_rollout_ref.model.path at the hub's default revision; "
            f"download that revision to a folder (`hf download {cfg.base.checkpoint} --revision {cfg.base.revision} "
            "--local-dir DIR`) and give base.checkpoint=DIR")
    try:
        files = write_data(cfg, folder / "data", verl_compile.MAX_PROMPT_TOKENS, model=model)
        job.notes.append(f"data: {files.counts['train']} training rows, {files.counts['validation']} validation rows")
        job.notes.append(f"prompts: {files.prompt_note}")
    except (UserError, OSError) as exc:
        job.notes.append(f"data NOT written here: {str(exc).splitlines()[0]} (the data sources must be readable where the "
                         "job is prepared: local copies via suites.<domain>.data_dir=DIR for the benchmarks and "
                         "suites.<domain>.train_data=PATH for training, docs/verl.md)")
    write_text_atomic(folder / "command.sh", job.script())
    (folder / "command.sh").chmod(0o755)
    write_text_atomic(folder / "overrides.txt", "\n".join(job.overrides) + "\n")
    write_text_atomic(folder / "translation.md", verl_compile.render_translations(job))
    if plan is not None:
        budget = {"kind": cfg.compare.budget_kind, "amount": cfg.compare.budget, "steps": plan.steps,
                  "save_every": plan.save_every, "watched": plan.watched}
    else:
        budget = {"kind": "steps", "amount": cfg.train.steps, "steps": cfg.train.steps,
                  "save_every": cfg.train.save_every or cfg.train.steps, "watched": False}
    write_json_atomic(out / "config.json", {
        "recipe": recipe, "base_checkpoint": model, "backend": "verl",
        "arm": vars(verl_compile.arm_settings(cfg)),
        "budget": budget,
        "config": to_dict(cfg),
        "verl": {"nodes": verl.nodes, "gpus_per_node": verl.gpus_per_node, "address": verl.address,
                 "overrides": job.overrides, "user_overrides": list(verl.overrides), "checkpoints": str(job.checkpoints),
                 "segments": [{"index": seg.index, "first_step": seg.first_step, "last_step": seg.last_step,
                               "overrides": seg.overrides} for seg in job.segments],
                 "not_expressed": job.not_expressed},
        "provenance": provenance.collect(seed=cfg.seed),
    })
    return job


# --- running the segments ------------------------------------------------------------------------

def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child is not alive
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def start_watcher(out: Path, address: str, submission_id: str, poll_s: float) -> int:
    """The watcher of a Ray job (harness/backends/verl/watch.py), detached from this process so that it
    outlives it; its pid. Its output: verl/watch-<id>.log."""
    logfile = (out / VERL / f"watch-{submission_id}.log").open("a")
    proc = subprocess.Popen([sys.executable, "-m", "harness.backends.verl.watch", "--run", str(out), "--address", address,
                             "--job", submission_id, "--poll", str(poll_s)],
                            stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]),
                                                                                           os.environ.get("PYTHONPATH")]))})
    logfile.close()
    return proc.pid


def run(job: verl_compile.VerlJob, out: Path, verl: VerlOptions | None = None, log=print, timeout_s: float | None = None) -> int:
    """Run the compiled job's segments in order, each unless verl saved its last step: here (verl
    starts a local Ray) or as a Ray job submitted to `job.address`. Metrics are imported while a
    job runs and after it. Returns 0 once the run is finished (`finished`); raises `VerlJobError`
    for a failed job (with its log's tail). `timeout_s` bounds the whole wait (tests)."""
    verl = verl or VerlOptions(address=job.address)
    if not (out / VERL / "data" / "train.parquet").is_file():
        raise ConfigError(f"'{out / VERL / 'data'}' has no train.parquet: the training data could not be written "
                          "(see verl/translation.md's notes)")
    meta = read_record(out / "config.json") or {}
    watched = bool(meta.get("budget", {}).get("watched"))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    log(f"{job.arm}: {len(job.segments)} verl run(s), steps " + ", ".join(f"{seg.first_step}-{seg.last_step}" for seg in job.segments))
    for seg in job.segments:
        if watched and budget_stop(out) is None and decide(out) is not None:  # spent before this segment (a late watcher)
            write_json_atomic(out / VERL / BUDGET_STOP, {**decide(out), "job": None})
        if finished(out):
            break
        if saved_through(job) >= seg.last_step:
            continue
        if job.address:
            _run_segment_on_ray(job, out, seg, verl, watched, deadline, log)
        else:
            _run_segment_here(job, out, seg, verl, watched, deadline, log)
        _import_quietly(out)
        if finished(out):
            break
        if saved_through(job) < seg.last_step:
            raise VerlJobError(f"segment {seg.index} of {job.arm} ended without verl's checkpoint of step {seg.last_step} "
                               f"(saved through step {saved_through(job)}); its files: {out / VERL}")
    return 0


def _import_quietly(out: Path) -> None:
    """metrics.jsonl from what verl wrote so far; nothing while no step is logged."""
    meta = read_record(out / "config.json") or {}
    segments = meta.get("verl", {}).get("segments") or []
    if segments and any(p.is_file() for p in (out / VERL / METRICS_DIR).glob("segment0*.jsonl")):
        import_verl_run(out, torn_ok=True)


def _wait(deadline: float | None, what: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise VerlJobError(f"gave up waiting for {what}: past the run's time limit")


def _run_segment_on_ray(job, out: Path, seg, verl: VerlOptions, watched: bool, deadline, log) -> None:
    """Attach to the segment's recorded job when Ray still runs it; else submit it (again). Then wait
    for it to end, importing its metrics as it runs."""
    address = job.address
    mine = [j for j in job_records(out) if j.get("segment") == seg.index and j.get("address") == address]
    entry = mine[-1] if mine else None
    state = job_status(address, entry["submission_id"]) if entry else "MISSING"
    if entry and state in ("PENDING", "RUNNING"):
        log(f"segment {seg.index}: attaching to Ray job {entry['submission_id']} ({state}), no second job submitted")
    else:
        if entry and state == "FAILED":
            log(f"segment {seg.index}: the earlier Ray job {entry['submission_id']} FAILED; the tail of its log:\n"
                f"{log_tail(address, entry['submission_id'])}\nsubmitting it again: verl resumes at its last save "
                f"(step {saved_through(job)})")
        entry = submit_segment(job, out, seg, log)
    if watched and not _alive(entry.get("watcher_pid")):
        entry["watcher_pid"] = start_watcher(out, address, entry["submission_id"], verl.poll_s)
        record_job(out, entry)
    try:
        while (state := job_status(address, entry["submission_id"])) not in TERMINAL:
            _wait(deadline, f"Ray job {entry['submission_id']}")
            if state == "MISSING":
                raise VerlJobError(f"Ray at {address} does not know job {entry['submission_id']} (the cluster restarted?); "
                                   "run again to submit the segment anew")
            time.sleep(verl.poll_s)
            _import_quietly(out)
            if watched and budget_stop(out) is None:  # the watcher's backstop while this process lives
                stop_at_budget(out, address, entry["submission_id"], log=log)
    except MetricsError:
        log(f"stopping Ray job {entry['submission_id']}: its metrics cannot be read")
        ray_job("stop", address, entry["submission_id"], timeout=600)
        raise
    if state == "FAILED":
        _import_quietly(out)
        raise VerlJobError(f"verl's Ray job {entry['submission_id']} (segment {seg.index} of {job.arm}) FAILED; its "
                           f"metrics so far are in {out / METRICS_FILE}; the tail of its log:\n"
                           f"{log_tail(address, entry['submission_id'])}")


def submit_segment(job, out: Path, seg, log=print) -> dict:
    """Submit segment `seg` as a Ray job (`ray job submit --no-wait`) and return its record: its
    submission id is chosen here and written to verl/jobs.json first, so a shell that dies right
    after the submission still leaves the job findable. The segment's earlier metrics file is kept
    as an attempt file first (verl starts its file anew)."""
    address = job.address
    attempts = [j for j in job_records(out) if j.get("segment") == seg.index]
    next_attempt(Path(seg.metrics_file))
    entry = {"segment": seg.index, "attempt": len(attempts) + 1, "address": address,
             "submission_id": f"harness-{job.arm}-seg{seg.index}-{uuid.uuid4().hex[:8]}",
             "submitted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "watcher_pid": None}
    record_job(out, entry)
    done = subprocess.run([ray_cli(), "job", "submit", f"--address={address}", f"--submission-id={entry['submission_id']}",
                           "--no-wait", "--", *job.main_command(seg.index)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise VerlJobError(f"`ray job submit` of segment {seg.index} to {address} failed ({done.returncode}): "
                           + " ".join((done.stdout + done.stderr).strip().splitlines()[-3:]))
    log(f"segment {seg.index}: submitted Ray job {entry['submission_id']} (follow it: ray job logs --follow "
        f"--address={address} {entry['submission_id']})")
    return entry


def _run_segment_here(job, out: Path, seg, verl: VerlOptions, watched: bool, deadline, log) -> None:
    """The segment as a process here (verl starts its own Ray), watched in this process."""
    next_attempt(Path(seg.metrics_file))
    proc = subprocess.Popen(job.main_command(seg.index), start_new_session=True)
    record_job(out, {"segment": seg.index, "attempt": len(job_records(out)) + 1, "address": None,
                      "submission_id": f"local-pid{proc.pid}", "pid": proc.pid,
                      "submitted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    try:
        while proc.poll() is None:
            _wait(deadline, f"segment {seg.index} (pid {proc.pid})")
            time.sleep(min(verl.poll_s, 1.0) if deadline is not None else verl.poll_s)
            if watched and stop_at_budget(out, None, f"local-pid{proc.pid}", log=log) is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=120)
                return
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=120)
    if proc.returncode != 0:
        raise VerlJobError(f"verl exited with {proc.returncode} (segment {seg.index} of {job.arm}); its files: {out / VERL}")


def import_verl_run(out: Path, torn_ok: bool = False) -> Path:
    """metrics.jsonl of the run folder `out`, made from its segments' verl file-logger files (in step
    order; the segments that have not run yet are left out). `torn_ok`: the files are being written."""
    meta_path = out / "config.json"
    if not meta_path.is_file():
        raise ConfigError(f"'{out}' is not a verl run folder (no config.json); `harness train --backend verl` writes one")
    meta = json.loads(meta_path.read_text())
    segments = meta.get("verl", {}).get("segments")
    if not segments:
        raise ConfigError(f"'{meta_path}' lists no verl segments (written by an older harness): prepare the run "
                          "again with `harness train --backend verl`")
    rows = verl_rows(out, meta, torn_ok=torn_ok)
    return write_text_atomic(out / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in rows))


def hf_checkpoints(out: Path) -> dict[int, Path]:
    """verl's HF-format checkpoints of the run, all segments', by step (what `harness eval` takes)."""
    checkpoints = out / VERL / CHECKPOINTS  # every segment saves into this one folder
    return {step: verl_compile.hf_checkpoint(checkpoints, step) for step in sorted(kept_steps(out))
            if (verl_compile.hf_checkpoint(checkpoints, step) / "config.json").is_file()}


