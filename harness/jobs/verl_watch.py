"""The watcher of a verl run under a budget that is not whole steps (wall-clock seconds, samples, tokens).

    python -m harness.jobs.verl_watch --run RUN_FOLDER --address http://HEAD:8265 --job SUBMISSION_ID [--poll S]

verl stops only at trainer.total_training_steps, which a wall-clock or tokens budget cannot fix in
advance. `harness train/compare --backend verl` starts this process beside each Ray job it submits
(detached: it outlives the submitting shell; its pid is in verl/jobs.json). Every `--poll` seconds
it reads the metrics verl has written so far (harness/jobs/train_verl.py `decide`) and, once the next
step would pass the budget and verl's checkpoint at or under it exists, records the stop in
verl/budget_stop.json and stops the job with `ray job stop`. It exits when the job has ended.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.jobs.train_verl import BUDGET_STOP, TERMINAL, VERL, decide, job_status, ray_job
from harness.runs import write_json_atomic


def watch(run: Path, address: str, job: str, poll_s: float, log=print) -> int:
    """Watch `job` until it ends; 0 when it ended (stopped here or by itself)."""
    while True:
        state = job_status(address, job)
        if state in TERMINAL or state == "MISSING":
            log(f"job {job}: {state}")
            return 0
        stop = decide(run)
        if stop is not None:
            write_json_atomic(run / VERL / BUDGET_STOP, {**stop, "job": job})  # first: the run is finished
            log(f"job {job}: {stop['reason']}; ray job stop")
            done = ray_job("stop", address, job, timeout=600)
            log((done.stdout + done.stderr).strip())
            return 0
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.jobs.verl_watch", description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="the run folder (config.json, verl/)")
    p.add_argument("--address", required=True, help="Ray job-submission address")
    p.add_argument("--job", required=True, help="the Ray job's submission id")
    p.add_argument("--poll", type=float, default=30.0, help="seconds between two looks at the metrics")
    args = p.parse_args(argv)
    return watch(Path(args.run), args.address, args.job, args.poll, log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    sys.exit(main())
