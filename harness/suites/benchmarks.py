"""Fixed public benchmarks as a suite: evaluation only, domain score = unweighted mean over them.

The paper's math score averages AIME24, AIME25, AMC, MATH-500, Minerva and OlympiadBench; its code
score averages apps, codecontests, codeforces and taco. Each loads from a local jsonl or the hub
(`load_benchmark` in harness/suites/math.py and harness/suites/code.py); there is no training split here.
"""

from __future__ import annotations

from typing import Any, Callable

from harness.config import ConfigError
from harness.suites.base import Item, ScoreResult, Split


class BenchmarkSuite:
    """Items of named benchmarks; `items("eval", cap)` gives each benchmark's first `cap` (0 = all)."""

    def __init__(self, name: str, scorer: Callable[[str, Any], ScoreResult], benchmarks: dict[str, list[Item]],
                 scorer_timeout_s: float | None = None):
        self.name = name
        self.scorer = scorer
        self.benchmarks = benchmarks
        self.scorer_timeout_s = scorer_timeout_s

    def items(self, split: Split, n: int) -> list[Item]:
        if split != "eval":
            raise ConfigError(
                f"suite '{self.name}' with source 'benchmarks' has only an eval split (asked for '{split}'); "
                f"train on suites.{self.name}.source=procedural or leave {self.name} out of suites.enabled"
            )
        return [it for items in self.benchmarks.values() for it in (items[:n] if n else items)]

    def score(self, response: str, item: Item) -> ScoreResult:
        return self.scorer(response, item.reference)
