"""Fixed public benchmarks as a suite: the eval split is the benchmarks, domain score = unweighted mean over them.

The paper's math score averages AIME24, AIME25, AMC, MATH-500, Minerva and OlympiadBench; its code
score averages apps, codecontests, codeforces and taco. Each loads from a local jsonl or the hub
(`load_benchmark` in suites/math.py and suites/code.py). The `train` and
`validation` splits come from the suite's training data when it has one (`suites.<domain>.train_data`:
suites/train_data.py, deduplicated against these benchmarks); without it there are none.
"""

from __future__ import annotations

from typing import Any, Callable

from harness.config import ConfigError
from suites.base import Item, ScoreResult, Split
from suites.train_data import TrainingData


class BenchmarkSuite:
    """Items of named benchmarks; `items("eval", cap)` gives each benchmark's first `cap` (0 = all);
    `items("train" | "validation", n)` the training data's (read on first use)."""

    def __init__(self, name: str, scorer: Callable[[str, Any], ScoreResult], benchmarks: dict[str, list[Item]],
                 scorer_timeout_s: float | None = None, training: TrainingData | None = None,
                 bound: Callable[[list[Item]], float] | None = None):
        self.name = name
        self.scorer = scorer
        self.benchmarks = benchmarks
        self.training = training
        """The training data (train and validation splits), or None: eval only."""
        self.bound = bound
        """Items -> the scorer bound they need (code: per test); None keeps `scorer_timeout_s`."""
        self.scorer_timeout_s = scorer_timeout_s
        if bound is not None:
            self.scorer_timeout_s = bound([it for items in benchmarks.values() for it in items])
        self.tasks: list[tuple[str, None]] = [("train_data", None)] if training is not None else []
        """Training tasks, for per-task item counts (the base builder's): the training data, or none."""

    @property
    def dedup(self) -> int | None:
        """Training rows dropped as copies of eval problems (reads the training data); None without one."""
        return None if self.training is None else self.training.dedup

    def items(self, split: Split, n: int) -> list[Item]:
        if split == "eval":
            return [it for items in self.benchmarks.values() for it in (items[:n] if n else items)]
        if self.training is None:
            raise ConfigError(
                f"suite '{self.name}' with source 'benchmarks' has only an eval split (asked for '{split}'); "
                f"give it training data (suites.{self.name}.train_data), train on suites.{self.name}.source=procedural, "
                f"or leave {self.name} out of suites.enabled"
            )
        items = self.training.items(split, n)
        if self.bound is not None:  # a training problem may have more tests than any benchmark's
            self.scorer_timeout_s = max(self.scorer_timeout_s or 0.0, self.bound(items))
        return items

    def score(self, response: str, item: Item) -> ScoreResult:
        return self.scorer(response, item.reference)
