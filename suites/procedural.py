"""Seeded procedural suites: items drawn from generators, split by a hash of the question text.

Reasoning Gym and the tiny math and code suites all work this way. A task is a generator: given a
seed stream it yields questions with what their scorer needs. Splits never share a question. Each
split draws from its own seed stream, and on top of that every question is assigned to exactly
one split by a hash of its text (`validation` and `eval` hold `heldout_fraction` of the question
space, `train` the rest). Small problem spaces repeat questions across seeds, so seeds alone
would let the eval measure recall (REFERENCE.md, "Tiny-scale feasibility").
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from suites.base import SPLITS, Item, ScoreResult, Split

VALIDATION_SHARE = 0.2
"""Part of the held-out question space given to `validation` (the rest is `eval`)."""

_SPLIT_SEED_OFFSET = {"train": 0, "validation": 1_000_003, "eval": 2_000_029}


@dataclass(frozen=True)
class Draw:
    """One generated question."""

    question: str
    """The question text: what the split hash and deduplication look at."""
    prompt: str
    """User message (the question with the suite's answer-format instruction)."""
    reference: Any
    """What the suite's scorer compares against."""
    target: str
    """A correct response (supervised warm-up target)."""


Generator = Callable[[int], Iterator[Draw]]
"""A task: seed -> endless (or long) stream of draws, deterministic from the seed."""


def question_bucket(question: str) -> float:
    """Deterministic position of a question in [0, 1), independent of seeds and Python's hash."""
    digest = hashlib.sha256(question.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(question: str, heldout_fraction: float) -> Split:
    u = question_bucket(question)
    if u >= heldout_fraction:
        return "train"
    return "validation" if u < heldout_fraction * VALIDATION_SHARE else "eval"


class ProceduralSuite:
    """Items from several generator tasks, in equal shares, for a split and a seed.

    Subclasses set the class attributes `name` and `scorer` (a module-level function, so that it
    pickles by name into scorer worker processes).
    """

    name: str
    scorer: Callable[[str, Any], ScoreResult]

    def __init__(
        self,
        tasks: list[tuple[str, Generator]],
        seed: int,
        heldout_fraction: float = 0.3,
        scorer_timeout_s: float | None = None,
        task_heldout: dict[str, float] | None = None,
    ):
        if not tasks:
            raise ValueError(f"suite '{self.name}' needs at least one task")
        self.tasks = tasks
        self.seed = seed
        self.heldout_fraction = heldout_fraction
        self.task_heldout = task_heldout or {}
        """Per-task overrides of heldout_fraction (tasks with a small question space)."""
        self.scorer_timeout_s = scorer_timeout_s

    def items(self, split: Split, n: int, unique: bool | None = None) -> list[Item]:
        """The first `n` items of `split`, tasks interleaved round-robin.

        Held-out splits are unique by question text by default; `train` may repeat questions.
        """
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        unique = split != "train" if unique is None else unique
        k = len(self.tasks)
        per_task = [n // k + (1 if i < n % k else 0) for i in range(k)]
        streams = [self._task_items(split, i, m, unique) for i, m in enumerate(per_task)]
        out: list[Item] = []
        for row in range(max(per_task, default=0)):
            out.extend(stream[row] for stream in streams if row < len(stream))
        return out

    def _task_items(self, split: Split, task_index: int, n: int, unique: bool) -> list[Item]:
        task_name, generate = self.tasks[task_index]
        seed = self.seed * 7919 + task_index * 104_729 + _SPLIT_SEED_OFFSET[split]
        max_draws = max(1000, 200 * n)
        heldout = self.task_heldout.get(task_name, self.heldout_fraction)
        seen: set[str] = set()
        out: list[Item] = []
        for _, draw in zip(range(max_draws), generate(seed)):
            q = draw.question
            if split_of(q, heldout) != split or (unique and q in seen):
                continue
            seen.add(q)
            out.append(Item(
                id=f"{self.name}/{task_name}/{split}/{len(out)}", task=task_name,
                prompt=draw.prompt, reference=draw.reference, target=draw.target,
            ))
            if len(out) == n:
                return out
        if n == 0:
            return out
        from harness.config import ConfigError

        raise ConfigError(
            f"{self.name} task '{task_name}' yields only {len(out)} distinct {split} questions of the "
            f"{n} asked for; widen its config or lower the item count"
        )

    def score(self, response: str, item: Item) -> ScoreResult:
        return self.scorer(response, item.reference)



def task_from_registry(suite: str, registry: dict[str, Callable[..., Iterator[Draw]]], name: str,
                       config: dict[str, Any]) -> Generator:
    """Registered generator `name` bound to its config; a wrong name or knob is a one-line ConfigError."""
    from harness.config import ConfigError

    if name not in registry:
        raise ConfigError(f"unknown {suite} task '{name}'; valid: {', '.join(registry)}")
    fn = registry[name]
    try:
        inspect.signature(fn).bind(0, **config)
    except TypeError:
        knobs = [p for p in inspect.signature(fn).parameters if p != "seed"]
        raise ConfigError(f"{suite} task '{name}' got config {config}; valid keys: {', '.join(knobs)}") from None
    return lambda seed: fn(seed, **config)
