"""The evaluations of a comparison, one at a time or several at once beside its training.

`harness compare` evaluates the baseline, then each arm's checkpoints once the arm has trained. With
the replicas on a Ray cluster of their own (`--replicas K --eval-address ADDR`) nothing of an
evaluation runs on this machine but its bookkeeping, so the comparison need not wait: the baseline
is evaluated while the first arm trains, an arm's checkpoints while the next arm trains, and up to
`at_once` checkpoints at a time, each with its own K replicas. Ray places them: replicas that find
no free GPU wait in Ray's queue, so "several at once when replicas are free" is Ray's scheduling,
not ours. Each evaluation is seeded by its checkpoint and protocol alone, so the order they finish
in changes no score.

With `at_once` 1 (the default without a cluster, and always under a `cpu_s` budget, which meters
this process's threads) `submit` runs the evaluation there and then, as before.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable


class EvalQueue:
    """Evaluations by label, each run once; `after` (the regression guard's check) runs after each
    one finishes, one at a time. A failure, of an evaluation or of `after`, is raised by the next
    `check` or `wait` in the submitting thread."""

    def __init__(self, at_once: int = 1, after: Callable[[], None] | None = None):
        if at_once < 1:
            raise ValueError(f"at_once must be >= 1, not {at_once}")
        self._after = after
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="eval") if at_once > 1 else None
        self._futures: dict[str, Future] = {}

    @property
    def concurrent(self) -> bool:
        return self._pool is not None

    def submit(self, label: str, evaluate: Callable[[], None]) -> None:
        """Run `evaluate` (once per label): now, or in the background when concurrent."""
        if label in self._futures:
            return
        if self._pool is None:  # here and now: a failure is raised to the caller at once
            evaluate()
            self._finished()
            self._futures[label] = done = Future()
            done.set_result(None)
            return
        self.check()
        self._futures[label] = self._pool.submit(self._run, evaluate)

    def _run(self, evaluate: Callable[[], None]) -> None:
        evaluate()
        self._finished()

    def _finished(self) -> None:
        if self._after is not None:
            with self._lock:
                self._after()

    def running(self) -> list[str]:
        """Labels submitted and not finished."""
        return [label for label, future in self._futures.items() if not future.done()]

    def check(self) -> None:
        """Raise the first failure among the finished evaluations, if any."""
        for future in self._futures.values():
            if future.done() and future.exception() is not None:
                raise future.exception()

    def wait(self) -> None:
        """Wait for every evaluation; raise the first failure (in submission order)."""
        for future in list(self._futures.values()):
            future.exception()  # waits
        self.check()

    def close(self, cancel: bool = False) -> None:
        """Let running evaluations finish (what they wrote is kept on disk and resumed from) and stop
        the threads; `cancel`: drop the ones not started."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> EvalQueue:
        return self

    def __exit__(self, kind, *_) -> None:
        self.close(cancel=kind is not None)
