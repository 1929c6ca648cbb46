"""The watcher of a verl run under a budget that is not whole steps (wall-clock seconds, samples, tokens).

    python -m harness.backends.verl.watch --run RUN_FOLDER --address http://HEAD:8265 --job SUBMISSION_ID [--poll S]

verl stops only at trainer.total_training_steps, which a wall-clock or tokens budget cannot fix in
advance. `harness train/compare --backend verl` starts this process beside each Ray job it submits
(detached: it outlives the submitting shell; its pid is in verl/jobs.json). Every `--poll` seconds
it reads the metrics verl has written so far (harness/backends/verl/control.py `decide`) and, once
the next step would pass the budget and verl's checkpoint at or under it exists, records the stop
in verl/budget_stop.json and stops the job with `ray job stop`. It exits when the job has ended.
It imports no model code, so it starts in a second or two.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.backends.verl.control import watch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.backends.verl.watch", description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="the run folder (config.json, verl/)")
    p.add_argument("--address", required=True, help="Ray job-submission address")
    p.add_argument("--job", required=True, help="the Ray job's submission id")
    p.add_argument("--poll", type=float, default=30.0, help="seconds between two looks at the metrics")
    args = p.parse_args(argv)
    return watch(Path(args.run), args.address, args.job, args.poll, log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    sys.exit(main())
