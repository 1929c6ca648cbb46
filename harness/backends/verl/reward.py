"""The reward verl computes: the suites' own scorers, each call bounded in a scorer process.

verl loads this file by path (`reward.custom_reward_function.path`) and calls
`compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=..., **reward_kwargs)`
once per response. In verl 0.9.1 that happens in its reward loop: `reward.num_workers` Ray actors
(`RewardLoopWorker`, placed round-robin over the nodes), to which the rollout streams each finished
response as it is generated; an actor's reward manager (`naive`) runs this synchronous function on
its event loop's default thread pool, so up to min(32, CPUs + 4) calls of one actor are in flight
at once. Each parquet row (harness/backends/verl/data.py) carries its scorer (`module:name` and
keyword arguments) and the bound of one call, so no profile is needed here.

Each call runs in one of the actor's scorer processes (a `ScorerPool` of one worker each,
harness/execution/bounded.py), as in training and evaluation: a pathological response (a CAS
blow-up, a program that never returns) comes back as reward 0 with status `timeout` within the
bound instead of stalling a 64-GPU step. A direct `suite.score()` would be unbounded. The actor
keeps up to `scorer_processes` of them (`ScorerProcesses`): a call takes a free one, starting one
while fewer exist, and waits only when all are busy, so an actor's threads score in parallel, one
call per process; nothing serialises them beyond that bound. How many: the compiled config says
(`reward_kwargs`, harness/backends/verl/compile.py: from `scoring.node_cpus`), or, where it says 0,
the node's CPUs less `reserved_cpus` (the GPU workers' share), divided among the node's
`workers_per_node` actors (`default_scorer_processes`).
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import os
import queue
import threading
from typing import Any, Callable

from harness.backends.verl import references
from harness.execution.bounded import ScoreResult, ScorerPool

DEFAULT_TIMEOUT_S = 60.0
"""Bound of a call whose row names none."""

MAX_CALLS_PER_WORKER = 32
"""The most calls one verl reward actor has in flight: its reward manager runs `compute_score` on
the event loop's default executor, min(32, CPUs + 4) threads (Python's ThreadPoolExecutor default),
so more scorer processes than that per actor would never be used."""

_scorers: dict[tuple[str, str], Any] = {}


def scorer(spec: str, kwargs_json: str = "{}"):
    """The scorer function a row names (`module:qualified name`), with its keyword arguments bound."""
    key = (spec, kwargs_json)
    if key not in _scorers:
        module, _, name = spec.partition(":")
        fn = importlib.import_module(module)
        for part in name.split("."):
            fn = getattr(fn, part)
        kwargs = json.loads(kwargs_json or "{}")
        if kwargs:
            fn = functools.partial(fn, **kwargs)
        _scorers[key] = fn
    return _scorers[key]


def node_cpus() -> int:
    """CPUs this process may run on (its affinity mask: all of the node's under Ray)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_scorer_processes(cpus: int, workers_per_node: int = 1, reserved_cpus: int = 0) -> int:
    """Scorer processes of one reward actor when the config names none: the node's `cpus` less
    `reserved_cpus`, shared by its `workers_per_node` actors (at least 1, at most the calls an
    actor has in flight). A code call keeps its process and one sandboxed run busy at a time, a
    math or Reasoning Gym call its process: one process per CPU keeps the CPUs busy."""
    if workers_per_node < 1 or reserved_cpus < 0:
        raise ValueError(f"need workers_per_node >= 1 and reserved_cpus >= 0, got {workers_per_node}, {reserved_cpus}")
    share = max(1, cpus - reserved_cpus) // workers_per_node
    return max(1, min(share, MAX_CALLS_PER_WORKER, cpus + 4))


class ScorerProcesses:
    """Up to `size` scorer processes (each a one-worker ScorerPool, started when first needed) for
    the calls of many threads: a call takes a free process for its duration and waits only while
    all `size` are busy. A process killed for a timeout is replaced inside its pool."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"need at least one scorer process, got {size}")
        self.size = size
        self._free: queue.SimpleQueue[ScorerPool] = queue.SimpleQueue()
        self._started = 0
        self._lock = threading.Lock()
        """Guards `_started` only; never held during a call."""

    def score(self, fn: Callable[..., ScoreResult], args: tuple, timeout_s: float) -> ScoreResult:
        """`fn(*args)` in a scorer process, bounded by `timeout_s` seconds."""
        pool = self._take(timeout_s)
        try:
            return pool.map(fn, [args], timeout_s)[0]
        finally:
            self._free.put(pool)

    def _take(self, timeout_s: float) -> ScorerPool:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            start = self._started < self.size
            if start:
                self._started += 1
        return ScorerPool(1, timeout_s) if start else self._free.get()

    def close(self) -> None:
        """Stop the idle processes (those of calls in flight stop with their pools at exit)."""
        while True:
            try:
                self._free.get_nowait().close()
            except queue.Empty:
                return


_processes: dict[int, ScorerProcesses] = {}
_processes_lock = threading.Lock()


def shared_processes(size: int) -> ScorerProcesses:
    """This process's scorer processes of that size (one set per size: verl passes the same
    reward_kwargs on every call)."""
    with _processes_lock:
        if size not in _processes:
            _processes[size] = ScorerProcesses(size)
        return _processes[size]


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None,
                  scorer_processes: int = 0, workers_per_node: int = 1, reserved_cpus: int = 0, **_: Any) -> dict:
    """verl's custom reward: {"score": reward, "timeout": 0|1, "scorer_error": 0|1}. verl keeps the extra
    keys per sample and averages them into its metrics, so they are numbers (the share of calls
    that timed out or raised), not the status string.

    `scorer_processes`, `workers_per_node`, `reserved_cpus`: the compiled
    `reward.custom_reward_function.reward_kwargs` (module docstring); `scorer_processes` 0 sizes
    them from this node's CPUs (`default_scorer_processes`)."""
    info = extra_info or {}
    if "scorer" not in info:
        raise ValueError(f"row of data source {data_source!r} has no extra_info.scorer: it was not written by "
                         "the harness (harness/backends/verl/data.py)")
    fn = scorer(info["scorer"], info.get("scorer_kwargs", "{}"))
    reference = references.decode(ground_truth)
    timeout_s = float(info.get("timeout_s") or DEFAULT_TIMEOUT_S)
    size = int(scorer_processes) or default_scorer_processes(node_cpus(), int(workers_per_node), int(reserved_cpus))
    result = shared_processes(size).score(fn, (solution_str, reference), timeout_s)
    return {"score": float(result.reward), "timeout": float(result.status == "timeout"),
            "scorer_error": float(result.status.startswith("error"))}


def workers_for(cpus: int, reserved_cpus: int) -> tuple[int, int]:
    """(reward actors per node, scorer processes per actor) for a node of `cpus` CPUs of which
    `reserved_cpus` are left to the GPU workers: as few actors as keep every scoring CPU busy
    (an actor has at most MAX_CALLS_PER_WORKER calls in flight), the CPUs shared evenly."""
    scoring = max(1, cpus - reserved_cpus)
    actors = math.ceil(scoring / MAX_CALLS_PER_WORKER)
    return actors, math.ceil(scoring / actors)
