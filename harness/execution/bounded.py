"""Scorer calls with a wall-clock bound each, in worker processes.

A verifier can hang or explode on a pathological response (huge exponents for a CAS, deeply nested
LaTeX, catastrophic regex backtracking on a megabyte of text). One such call must not stall a
training step, and a failure must be recorded as such, never as a silent 0. math-verify's own
timeout uses `signal.alarm`, which does nothing outside a main thread; here every call runs in
the MAIN thread of a worker process, under two bounds:

1. inside the worker, an interval timer (SIGALRM) interrupts Python code that runs past
   `timeout_s`; the call's result is `ScoreResult(0.0, "timeout")`;
2. in the parent, a deadline per call (results stream back one by one) backstops code that never
   returns to the interpreter (C loops ignore signals): the worker is killed and replaced, the
   call in progress is a "timeout", and the rest of its batch is queued again.

Scorer functions must be module-level (picklable by name) and return a `ScoreResult`; any
exception becomes `ScoreResult(0.0, "error: <ExceptionType>")`. Workers die with the process that
started them, SIGKILL included (`harness.execution.lifeline`), and their sandbox fork servers with them.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import pickle
import signal
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Sequence

from harness.execution import lifeline


@dataclass(frozen=True)
class ScoreResult:
    """What a scorer says about one response."""

    reward: float
    """In [0, 1]; continuous where the verifier gives partial credit."""
    status: str
    """`correct`, `partial`, `wrong`, `no_answer`, `timeout` or `error`."""
    extracted: str | None = None
    """The answer the scorer pulled out of the response, if any."""


Scorer = Callable[..., ScoreResult]
"""A scorer: a module-level function `(response, reference, **bound keywords) -> ScoreResult`.
`ScorerPool.map` records any other return value as an error (its status names the type)."""


_CHUNK = 64
"""Calls sent to a worker at once (amortises the inter-process round trip)."""


class _Timeout(BaseException):
    """A BaseException, so that a scorer's own broad `except Exception` cannot swallow it."""


def _alarm(signum, frame):
    raise _Timeout()


def _worker(conn: Connection, lifeline_fd: int | None, parent_end: Connection | None = None) -> None:
    if lifeline_fd is not None:
        lifeline.die_with_parent(lifeline_fd)
    # A forked worker holds a copy of the parent's end of its own pipe: closed, so that the parent
    # dying (kill -9 included) ends the worker (recv sees EOF) instead of leaving it waiting forever.
    if parent_end is not None:
        parent_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    signal.signal(signal.SIGALRM, _alarm)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        fn, calls, timeout_s = task
        for args in calls:
            try:
                signal.setitimer(signal.ITIMER_REAL, timeout_s)
                try:
                    result = fn(*args)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                if not isinstance(result, ScoreResult):
                    result = ScoreResult(0.0, f"error: scorer returned {type(result).__name__}")
            except _Timeout:
                result = ScoreResult(0.0, "timeout")
            except Exception as exc:  # recorded, never a silent zero
                result = ScoreResult(0.0, f"error: {type(exc).__name__}")
            conn.send(result)  # one at a time: the parent's deadline is per call


class _Slot:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        # a forked worker inherits the lifeline's read end; a spawned one (not Linux) goes without
        fd = lifeline.parent_end() if ctx.get_start_method() == "fork" else None
        self.proc = ctx.Process(target=_worker, args=(child, fd, self.conn), daemon=True)
        self.proc.start()
        child.close()
        self.task: list[int] = []
        self.done = 0
        """Calls of `task` answered so far; the next one is in progress."""
        self.deadline = 0.0

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class ScorerPool:
    """Worker processes running scorer calls, each call bounded by `timeout_s` seconds."""

    def __init__(self, workers: int = 2, timeout_s: float = 10.0):
        if workers < 1 or timeout_s <= 0:
            raise ValueError(f"need workers >= 1 and timeout_s > 0, got {workers} and {timeout_s}")
        self.workers = workers
        self.timeout_s = timeout_s
        self._ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
        self._slots: list[_Slot] = []

    def _ensure(self) -> None:
        while len(self._slots) < self.workers:
            self._slots.append(_Slot(self._ctx))

    def start(self) -> None:
        """Start the worker processes now (`map` starts them on first use otherwise): a caller that
        goes on to call `map` from another thread forks them first, from a process with one thread."""
        self._ensure()

    def map(
        self, fn: Callable[..., ScoreResult], calls: Sequence[tuple[Any, ...]], timeout_s: float | None = None
    ) -> list[ScoreResult]:
        """`fn(*args)` for every args tuple, in order; timeouts and errors come back as results.

        `timeout_s` overrides the pool's bound per call (a code item with many tests needs more).
        Identical calls are made once: scorers are pure, and with N=512 samples of a small model
        many responses repeat.
        """
        unique: dict[bytes, int] = {}
        first_of: list[int] = []
        distinct: list[tuple[Any, ...]] = []
        for args in calls:
            key = pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)
            if key not in unique:
                unique[key] = len(distinct)
                distinct.append(args)
            first_of.append(unique[key])
        answers = self._map_distinct(fn, distinct, timeout_s or self.timeout_s)
        return [answers[i] for i in first_of]

    def _map_distinct(self, fn, calls: Sequence[tuple[Any, ...]], timeout_s: float) -> list[ScoreResult]:
        self._ensure()
        results: list[ScoreResult | None] = [None] * len(calls)
        # at least two chunks per worker, so a slow scorer (a sandboxed program: ~25 ms a call)
        # keeps every worker busy to the end instead of one worker running a 64-call tail
        chunk = max(1, min(_CHUNK, -(-len(calls) // (2 * self.workers))))
        queue: deque[list[int]] = deque(
            list(range(i, min(i + chunk, len(calls)))) for i in range(0, len(calls), chunk)
        )
        busy: dict[int, _Slot] = {}
        while queue or busy:
            for index, slot in enumerate(self._slots):
                if index not in busy and queue:
                    slot.task, slot.done = queue.popleft(), 0
                    slot.deadline = time.monotonic() + timeout_s + 1.0
                    slot.conn.send((fn, [calls[i] for i in slot.task], timeout_s))
                    busy[index] = slot
            soonest = min(s.deadline for s in busy.values())
            ready = wait([s.conn for s in busy.values()], timeout=max(0.0, soonest - time.monotonic()))
            for index, slot in list(busy.items()):
                failure = None
                if slot.conn in ready:
                    try:
                        while slot.done < len(slot.task) and slot.conn.poll():
                            results[slot.task[slot.done]] = slot.conn.recv()
                            slot.done += 1
                            slot.deadline = time.monotonic() + timeout_s + 1.0
                    except (EOFError, OSError):  # the worker died (e.g. the scorer crashed the interpreter)
                        failure = "error: worker died"
                elif time.monotonic() >= slot.deadline:
                    failure = "timeout"
                if failure is not None:
                    # The call in progress is the culprit; the rest of its chunk goes back in the queue.
                    results[slot.task[slot.done]] = ScoreResult(0.0, failure)
                    if slot.done + 1 < len(slot.task):
                        queue.appendleft(slot.task[slot.done + 1:])
                    self._replace(index)
                    del busy[index]
                elif slot.done == len(slot.task):
                    del busy[index]
        return [r if r is not None else ScoreResult(0.0, "error: no result") for r in results]

    def _replace(self, index: int) -> None:
        self._slots[index].kill()
        self._slots[index] = _Slot(self._ctx)

    def close(self) -> None:
        for slot in self._slots:
            try:
                slot.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
            slot.proc.join(timeout=1)
            if slot.proc.is_alive():
                slot.kill()
        self._slots = []

    def __enter__(self) -> "ScorerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_DEFAULT: dict[tuple[int, float], ScorerPool] = {}


def shared_pool(workers: int, timeout_s: float) -> ScorerPool:
    """One pool per (workers, timeout) for the process, closed at exit."""
    key = (workers, timeout_s)
    if key not in _DEFAULT:
        _DEFAULT[key] = ScorerPool(workers, timeout_s)
    return _DEFAULT[key]


@atexit.register
def _close_shared() -> None:
    for pool in _DEFAULT.values():
        pool.close()
    _DEFAULT.clear()
