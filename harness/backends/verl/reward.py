"""The reward verl computes: the suites' own scorers, each call bounded in a worker process.

verl loads this file by path (`reward.custom_reward_function.path`) and calls
`compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)` once per
response from its reward loop (several threads per reward worker). Each row of the harness's
parquet files (harness/backends/verl/data.py) carries its scorer (`module:name` and keyword
arguments) and the bound of one call, so no profile is needed here.

The call goes through the harness's bounded scorer pool (harness/execution/bounded.py), as in
training and evaluation: a pathological response (a CAS blow-up, a program that never returns)
comes back as reward 0 with status `timeout` within the bound instead of stalling a 64-GPU step.
A direct `suite.score()` would be unbounded. One pool of `WORKERS` processes serves the reward
worker; calls from its threads are serialised on it.
"""

from __future__ import annotations

import functools
import importlib
import json
import threading
from typing import Any

from harness.backends.verl import references
from harness.execution.bounded import shared_pool

WORKERS = 1
"""Scorer processes per verl reward worker (verl runs `reward.num_workers` of those)."""

DEFAULT_TIMEOUT_S = 60.0
"""Bound of a call whose row names none."""

_lock = threading.Lock()
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


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None,
                  **_: Any) -> dict:
    """verl's custom reward: {"score": reward, "timeout": 0|1, "scorer_error": 0|1}. verl keeps the extra
    keys per sample and averages them into its metrics, so they are numbers (the share of calls
    that timed out or raised), not the status string."""
    info = extra_info or {}
    if "scorer" not in info:
        raise ValueError(f"row of data source {data_source!r} has no extra_info.scorer: it was not written by "
                         "the harness (harness/backends/verl/data.py)")
    fn = scorer(info["scorer"], info.get("scorer_kwargs", "{}"))
    reference = references.decode(ground_truth)
    timeout_s = float(info.get("timeout_s") or DEFAULT_TIMEOUT_S)
    with _lock:
        result = shared_pool(WORKERS, timeout_s).map(fn, [(solution_str, reference)], timeout_s)[0]
    return {"score": float(result.reward), "timeout": float(result.status == "timeout"),
            "scorer_error": float(result.status.startswith("error"))}
