"""A fresh interpreter that makes procedural items: `python -m suites.generation_worker`.

`procedural.generate_items` starts it with PYTHONHASHSEED=0 when the calling interpreter's string
hashes are randomized: several reasoning-gym generators iterate over sets of strings, so their
items depend on the hash seed, and only a fixed seed makes them the same in every process. It reads
a pickled list of `TaskRequest`s on stdin and writes the pickled list of their items (or the
exception one raised) on stdout; anything the generators print goes to stderr. It dies with the
process that started it, however that one dies (`harness.execution.lifeline`).
"""

from __future__ import annotations

import os
import pickle
import sys

from harness.execution import lifeline
from suites.procedural import task_items


def main() -> None:
    lifeline.die_with_parent_from_environment()
    result_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray output of the generators must not mix with the result

    requests = pickle.load(sys.stdin.buffer)
    try:
        result = ("items", [task_items(r) for r in requests])
    except Exception as exc:  # a task's ConfigError (too few questions) goes back to the caller as it is
        result = ("error", exc)
    pickle.dump(result, result_out)
    result_out.flush()


if __name__ == "__main__":
    main()
