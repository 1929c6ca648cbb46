"""Reasoning Gym suite: procedural reasoning tasks, answers in <answer> tags, continuous reward.

Scoring first extracts the content of the last `<answer>...</answer>` in the response and only
then calls the dataset's own `score_answer`. Calling `score_answer` on the raw response is a trap:
reasoning-gym gives partial credit when the right answer appears anywhere in a long response, so
a model would be rewarded for rambling.

Splits never share a question. Each split draws from its own seed stream, and on top of that
every question is assigned to exactly one split by a hash of its text (the `eval` and
`validation` buckets hold `heldout_fraction` of the question space, `train` the rest). Small
problem spaces repeat questions across seeds, so seeds alone would let the eval measure recall.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Callable

import reasoning_gym
from reasoning_gym.factory import DATASETS
from reasoning_gym.utils import extract_answer

from suites.base import SPLITS, Item, ScoreResult, Split

NAME = "reasoning_gym"

INSTRUCTION = "Give your final answer inside <answer></answer> tags."
"""Appended to every question: the model must put its answer in tags for it to count."""

VALIDATION_SHARE = 0.2
"""Part of the held-out question space given to `validation` (the rest is `eval`)."""

_SPLIT_SEED_OFFSET = {"train": 0, "validation": 1_000_003, "eval": 2_000_029}


def check_task_name(name: str) -> None:
    """Reject an unknown dataset name with one line (raises config.ConfigError)."""
    if name not in DATASETS:
        from harness.config import ConfigError

        close = [n for n in sorted(DATASETS) if name[:4] and n.startswith(name[:4])]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"unknown reasoning-gym task '{name}'{hint}; valid: any name in "
            f"reasoning_gym.factory.DATASETS, e.g. chain_sum, basic_arithmetic, count_bits"
        )


def question_bucket(question: str) -> float:
    """Deterministic position of a question in [0, 1), independent of seeds and Python's hash."""
    digest = hashlib.sha256(question.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(question: str, heldout_fraction: float) -> Split:
    u = question_bucket(question)
    if u >= heldout_fraction:
        return "train"
    return "validation" if u < heldout_fraction * VALIDATION_SHARE else "eval"


@functools.lru_cache(maxsize=None)
def _scorer_for(dataset_name: str) -> Callable[[str | None, dict], float]:
    return reasoning_gym.get_score_answer_fn(dataset_name)


def score(response: str, entry: dict) -> ScoreResult:
    """Score a response against a reasoning-gym entry: tag extraction, then the dataset's scorer."""
    answer = extract_answer(response, tag_name="answer")
    if answer is None:
        return ScoreResult(reward=0.0, status="no_answer")
    name = entry["metadata"]["source_dataset"]
    try:
        reward = float(_scorer_for(name)(answer, entry))
    except Exception as exc:  # a scorer bug must be visible, not a silent zero
        return ScoreResult(reward=0.0, status=f"error: {type(exc).__name__}", extracted=answer)
    reward = min(max(reward, 0.0), 1.0)
    status = "correct" if reward >= 1.0 else ("partial" if reward > 0.0 else "wrong")
    return ScoreResult(reward=reward, status=status, extracted=answer)


def format_prompt(question: str) -> str:
    return f"{question}\n{INSTRUCTION}"


def format_target(answer: str) -> str:
    return f"<answer>{answer}</answer>"


class ReasoningGymSuite:
    """Items from a mix of reasoning-gym datasets, in equal shares, for a split and a seed."""

    name = NAME
    scorer = staticmethod(score)

    def __init__(self, tasks: list[tuple[str, dict[str, Any]]], seed: int, heldout_fraction: float = 0.3):
        for task_name, _ in tasks:
            check_task_name(task_name)
        self.tasks = tasks
        self.seed = seed
        self.heldout_fraction = heldout_fraction

    @classmethod
    def from_config(cls, cfg, seed: int) -> "ReasoningGymSuite":
        """Build from a `ReasoningGymSuiteConfig`."""
        return cls([(t.name, dict(t.config)) for t in cfg.tasks], seed, cfg.heldout_fraction)

    def items(self, split: Split, n: int, unique: bool | None = None) -> list[Item]:
        """The first `n` items of `split`, tasks interleaved round-robin.

        Held-out splits are unique by question text by default; `train` may repeat questions.
        """
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        unique = split != "train" if unique is None else unique
        per_task = [n // len(self.tasks) + (1 if i < n % len(self.tasks) else 0) for i in range(len(self.tasks))]
        streams = [self._task_items(split, i, k, unique) for i, k in enumerate(per_task)]
        out: list[Item] = []
        for row in range(max(per_task, default=0)):
            out.extend(stream[row] for stream in streams if row < len(stream))
        return out

    def _task_items(self, split: Split, task_index: int, n: int, unique: bool) -> list[Item]:
        name, task_cfg = self.tasks[task_index]
        seed = self.seed * 7919 + task_index * 104_729 + _SPLIT_SEED_OFFSET[split]
        # The dataset is virtual (items made on access), so asking for a large size costs nothing.
        max_draws = max(1000, 200 * n)
        dataset = reasoning_gym.create_dataset(name, seed=seed, size=max_draws, **task_cfg)
        seen: set[str] = set()
        out: list[Item] = []
        for idx in range(max_draws):
            entry = dataset[idx]
            q = entry["question"]
            if split_of(q, self.heldout_fraction) != split or (unique and q in seen):
                continue
            seen.add(q)
            out.append(
                Item(
                    id=f"{NAME}/{name}/{split}/{len(out)}",
                    task=name,
                    prompt=format_prompt(q),
                    reference=_plain(entry),
                    target=format_target(str(entry["answer"])),
                )
            )
            if len(out) == n:
                return out
        from harness.config import ConfigError

        raise ConfigError(
            f"reasoning-gym task '{name}' yields only {len(out)} distinct {split} questions of the "
            f"{n} asked for; widen its config or lower the item count"
        )

    def score(self, response: str, item: Item) -> ScoreResult:
        return score(response, item.reference)


def _plain(entry: dict) -> dict:
    """Entry with only what scoring needs, so items stay small and picklable."""
    return {"question": entry["question"], "answer": entry["answer"], "metadata": entry["metadata"]}
