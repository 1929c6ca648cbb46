"""The suite seam: items to generate for, and a scorer that turns a response into a reward.

Every suite yields `Item`s for a split and hands back a `ScoreResult` for a response. The same
scorer gives the training reward and the evaluation score (one module per domain), so training
and offline numbers cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from harness.execution.bounded import Scorer, ScoreResult  # the scorers' contract is the bounded pool's (re-exported)

Split = Literal["train", "validation", "eval"]
"""`train` feeds supervised warm-up and RL; `validation` drives stopping rules; `eval` is reported."""

SPLITS: tuple[str, ...] = ("train", "validation", "eval")


@dataclass(frozen=True)
class Item:
    """One prompt with what its scorer needs."""

    id: str
    """Stable identifier: suite, task and index within the split."""
    task: str
    """Benchmark or dataset the item comes from."""
    prompt: str
    """User message (before any chat template)."""
    reference: Any
    """Whatever the suite's scorer compares against (an answer, tests, a reasoning-gym entry)."""
    target: str
    """A correct response, used as the supervised target when bootstrapping a base."""


@runtime_checkable
class Suite(Protocol):
    """A source of items and the scorer for them. Every suite `build_suite` returns satisfies it
    (tests/test_tiny_suites.py checks each one with isinstance and the scorer's parameters)."""

    name: str
    scorer: Scorer
    """Module-level function (response, reference) -> ScoreResult; picklable, so it can run in a
    bounded worker process (harness/execution/bounded.py)."""

    scorer_timeout_s: float | None
    """Wall-clock bound per scorer call, or None for the profile's `scoring.timeout_s` (a code
    item runs many tests, each with its own limit, so its call needs a larger bound)."""

    def items(self, split: Split, n: int) -> list[Item]:
        """The first `n` items of a split, deterministic from the suite's seed."""
        ...

    def score(self, response: str, item: Item) -> ScoreResult:
        """Reward for `response` to `item` (in-process, unbounded: `scorer` through a ScorerPool
        is what training and evaluation use)."""
        ...
