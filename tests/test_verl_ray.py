"""The verl run's control path against a REAL local Ray (a head started here on CPU, jobs submitted with
`ray job submit`), with tests/verl_standin.py standing in for verl's GPU trainer (clearly a stand-in:
it writes verl-format metrics step by step and HF checkpoints at save_freq, nothing else).

What is checked, each wait bounded: the watcher stops the job once the next step would pass a
wall-clock budget and matched spend then picks the nearest kept checkpoint at or under every point;
a job that dies is reported with its log's tail and its rerun resumes at the last save; a run
started again while its job still runs attaches to it instead of submitting a second; a required
key verl did not write stops the job and is an error naming key, file and step.

Marked `verl` (tox -e verl, whose environment has ray[default]); skipped without ray.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import time
from pathlib import Path

import pytest

from harness.backends.verl.compile import plan_steps
from harness.backends.verl.metrics import MetricsError
from harness.config import load_config
from harness.jobs import train_verl
from harness.jobs.compare import matched_checkpoints
from harness.runs import METRICS_FILE, Budget, read_metrics

HAVE_RAY = importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.dashboard") is not None
pytestmark = [pytest.mark.verl, pytest.mark.skipif(not HAVE_RAY, reason="ray[default] is not installed (tox -e verl installs it)")]

STANDIN = (sys.executable, str(Path(__file__).with_name("verl_standin.py")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A local Ray head with its job server (the dashboard), stopped in teardown."""
    import ray
    from ray.job_submission import JobSubmissionClient

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
             _temp_dir=str(tmp_path_factory.mktemp("ray")), configure_logging=False, log_to_driver=False)
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                JobSubmissionClient(address).list_jobs()
                break
            except Exception:  # the job server starts a moment after ray.init returns
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield address
    finally:
        ray.shutdown()


def prepared(tmp_path: Path, address: str, overrides: list[str], standin: list[str], budget: bool = True,
             poll_s: float = 0.5):
    """A verl run folder of smoke's brorl arm as `harness compare --backend verl` prepares it, its
    entry point the stand-in, and `standin` as the user's --verl-override."""
    cfg = load_config("smoke", ["base.checkpoint=/standin/base", *overrides], recipe="brorl")
    out = tmp_path / "run"
    verl = train_verl.VerlOptions(nodes=1, gpus_per_node=1, address=address, overrides=tuple(standin),
                                  entrypoint=STANDIN, poll_s=poll_s)
    job = train_verl.prepare(cfg, "brorl", out, verl, plan=plan_steps(cfg) if budget else None, log=lambda _: None)
    data = out / "verl" / "data" / "train.parquet"
    if not data.is_file():  # the stand-in reads no data; run() only checks the file is there
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_bytes(b"")
    return cfg, out, verl, job


def test_the_watcher_stops_at_a_wall_clock_budget_and_every_point_gets_its_checkpoint(tmp_path, ray_head):
    """10 simulated seconds a step, budget 55 s: after step 5 (50 s) the next step would pass it. Two
    segments (reference reset every 4 steps: two Ray jobs), saves every 2 steps and at step 4."""
    _, out, verl, job = prepared(tmp_path, ray_head, [
        "compare.budget_kind=wall_s", "compare.budget=55", "compare.eval_points=[0.5,1.0]", "train.steps=20",
        "train.ref_reset_every=4", "train.save_every=2"], ["+standin.step_s=1.5"])
    assert [(s.first_step, s.last_step) for s in job.segments][:2] == [(1, 4), (5, 8)]
    train_verl.run(job, out, verl, log=lambda _: None, timeout_s=90)
    stop = train_verl.budget_stop(out)
    assert stop is not None and stop["step"] == 5 and stop["spent"] == 50.0 and stop["checkpoint_step"] == 4
    rows = read_metrics(out / METRICS_FILE)
    assert 5 <= rows[-1]["step"] <= 6  # stopped within the step that was running
    records = train_verl.job_records(out)
    assert [r["segment"] for r in records] == [0, 1] and all(r["submission_id"].startswith("harness-brorl-seg") for r in records)
    assert train_verl.job_status(ray_head, records[-1]["submission_id"]) == "STOPPED"
    # matched spend: 27.5 s -> step 2 (kept), 55 s -> step 5 (not kept: the nearest kept at or under it, 4)
    chosen = matched_checkpoints(out, rows, Budget("wall_s", 55), [0.5])
    assert sorted(chosen) == [2, 4] and all((path / "config.json").is_file() for path in chosen.values())


def test_a_killed_job_is_reported_with_its_log_and_the_rerun_resumes_at_its_last_save(tmp_path, ray_head):
    _, out, verl, job = prepared(tmp_path, ray_head, ["train.steps=5", "train.ref_reset_every=0", "train.save_every=2"],
                                 ["+standin.die_after=3", "+standin.step_s=0.1"], budget=False)
    with pytest.raises(train_verl.VerlJobError, match=r"(?s)FAILED.*dying after step 3"):
        train_verl.run(job, out, verl, log=lambda _: None, timeout_s=60)
    assert [r["step"] for r in read_metrics(out / METRICS_FILE)] == [1, 2, 3]  # imported after the failed segment
    said = []
    train_verl.run(job, out, verl, log=said.append, timeout_s=60)
    assert any("FAILED; the tail of its log" in line and "submitting it again" in line for line in said)
    assert train_verl.finished(out)
    first, again = train_verl.job_records(out)
    assert (first["attempt"], again["attempt"]) == (1, 2)
    assert "resumed from global_step_2" in train_verl.log_tail(ray_head, again["submission_id"])
    rows = read_metrics(out / METRICS_FILE)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]  # step 3 from the rerun, the first attempt's file kept
    assert (out / "verl" / "metrics" / "segment0.attempt1.jsonl").is_file()


def test_a_run_started_again_attaches_to_its_running_job(tmp_path, ray_head):
    """As if the submitting shell died right after the submission: the job is recorded and runs; the
    next `run` (what `compare --resume` calls) attaches to it and submits nothing."""
    _, out, verl, job = prepared(tmp_path, ray_head, ["train.steps=4", "train.ref_reset_every=0", "train.save_every=2"],
                                 ["+standin.step_s=1.0"], budget=False)
    entry = train_verl.submit_segment(job, out, job.segments[0], log=lambda _: None)
    said = []
    train_verl.run(job, out, verl, log=said.append, timeout_s=60)
    assert any(f"attaching to Ray job {entry['submission_id']}" in line for line in said)
    assert [r["submission_id"] for r in train_verl.job_records(out)] == [entry["submission_id"]]
    assert train_verl.job_status(ray_head, entry["submission_id"]) == "SUCCEEDED"
    assert [r["step"] for r in read_metrics(out / METRICS_FILE)] == [1, 2, 3, 4]


def test_a_required_key_missing_stops_the_job_and_names_key_file_and_step(tmp_path, ray_head):
    _, out, verl, job = prepared(tmp_path, ray_head, ["train.steps=30", "train.ref_reset_every=0", "train.save_every=2"],
                                 ["+standin.omit=timing_s/step", "+standin.step_s=0.5"], budget=False)
    with pytest.raises(MetricsError, match=r"'timing_s/step' .* at step 1 of '.*segment0.jsonl'"):
        train_verl.run(job, out, verl, log=lambda _: None, timeout_s=60)
    record = train_verl.job_records(out)[-1]
    assert train_verl.job_status(ray_head, record["submission_id"]) == "STOPPED"
    assert json.loads((out / "config.json").read_text())["budget"]["kind"] == "steps"
