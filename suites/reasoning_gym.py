"""Reasoning Gym suite: procedural reasoning tasks, answers in <answer> tags, continuous reward.

Scoring first extracts the content of the last `<answer>...</answer>` in the response and only
then calls the dataset's own `score_answer`. Calling `score_answer` on the raw response is a trap:
reasoning-gym gives partial credit when the right answer appears anywhere in a long response, so
a model would be rewarded for rambling.

Items are split by a hash of the question's canonical problem (suites/procedural.py, the same key
as the tiny math and code suites), so no eval question is a training question, of this task or of
another that words the same problem in a way the key recognises ("Calculate 35 - 2." here,
"Compute 35 - 2." in tiny math; the limits are in `canonical_problem`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import random
import tempfile
from typing import Any, Callable, Iterator

import numpy
import reasoning_gym
from reasoning_gym.factory import DATASETS
from reasoning_gym.utils import extract_answer

from harness.config import ConfigError
from suites.base import ScoreResult
from suites.procedural import Draw, ProceduralSuite
from suites.reasoning_gym_tasks import HELDOUT_FRACTION, PRORL_TASKS, TOO_FEW_QUESTIONS

NAME = "reasoning_gym"

INSTRUCTION = "Give your final answer inside <answer></answer> tags."
"""Appended to every question: the model must put its answer in tags for it to count."""

def check_task_name(name: str) -> None:
    """Reject an unknown dataset name with one line (raises config.ConfigError)."""
    if name not in DATASETS:
        close = [n for n in sorted(DATASETS) if name[:4] and n.startswith(name[:4])]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"unknown reasoning-gym task '{name}'{hint}; valid: any name in "
            f"reasoning_gym.factory.DATASETS, e.g. chain_sum, basic_arithmetic, count_bits"
        )


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


_CHUNK = 10_000
"""Items per virtual dataset; the stream moves to a fresh seed after each (some datasets, e.g.
word_ladder, refuse large sizes)."""


@contextlib.contextmanager
def _in_dir(path: str, global_seed: int, sink):
    """Run a generator call with `path` as the working directory and the global `random` and numpy
    generators seeded with `global_seed`, then give the caller back its directory and generator
    states; what the call prints (codeio's snippets print their output, syntax warnings and errors)
    goes to `sink` (the stream's one open os.devnull). The seeding is for generators that draw from the global generators instead of their
    own seeded one (list_functions' odd-number lists, codeio's input generators): without it their
    items differ from run to run."""
    before = os.getcwd()
    states = random.getstate(), numpy.random.get_state()
    random.seed(global_seed)
    numpy.random.seed(global_seed % 2**32)
    os.chdir(path)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        os.chdir(before)
        random.setstate(states[0])
        numpy.random.set_state(states[1])


def _draws(name: str, task_config: dict[str, Any], seed: int) -> Iterator[Draw]:
    """The task's endless stream of draws from `seed` (what `task_generator` binds).

    Every generator call runs in a private scratch directory, removed when the stream is closed:
    some prorl96 generators run code that writes files into the current directory (codeio's
    snippets: file_*.txt, simulation_data.txt, sailor_performance.csv, ...), which would otherwise
    land in the user's repository or run folder. A draw whose generator raises (maze does, about
    once in 1,500) is skipped: the stream stays deterministic and the item count is what was asked for.
    """
    with tempfile.TemporaryDirectory(prefix="harness-reasoning-gym-") as scratch, open(os.devnull, "w") as sink:
        for chunk in range(10**6):
            chunk_seed = seed + chunk * 1_000_033
            with _in_dir(scratch, chunk_seed, sink):
                dataset = reasoning_gym.create_dataset(name, seed=chunk_seed, size=_CHUNK, **task_config)
            for idx in range(_CHUNK):
                try:
                    with _in_dir(scratch, chunk_seed * _CHUNK + idx, sink):
                        entry = dataset[idx]
                except Exception:
                    continue
                yield Draw(
                    question=entry["question"], prompt=format_prompt(entry["question"]),
                    reference=_plain(entry), target=format_target(str(entry["answer"])),
                )


def task_generator(name: str, task_config: dict[str, Any]):
    """A reasoning-gym dataset as a procedural task (suites/procedural.py): seed -> draws.
    A functools.partial of a module-level function, so it pickles into generation workers."""
    return functools.partial(_draws, name, dict(task_config))


class ReasoningGymSuite(ProceduralSuite):
    """Items from a mix of reasoning-gym datasets, in equal shares, for a split and a seed."""

    name = NAME
    scorer = staticmethod(score)
    fixed_hash_seed = True  # isomorphic_strings, ransom_note, codeio, ... iterate over sets of strings

    def __init__(self, tasks: list[tuple[str, dict[str, Any]]], seed: int, heldout_fraction: float = 0.3,
                 task_heldout: dict[str, float] | None = None, small_tasks: frozenset[str] = frozenset(),
                 workers: int = 1):
        for task_name, _ in tasks:
            check_task_name(task_name)
        super().__init__([(n, task_generator(n, c)) for n, c in tasks], seed, heldout_fraction,
                         task_heldout=task_heldout, small_tasks=small_tasks, workers=workers)

    @classmethod
    def from_config(cls, cfg, seed: int) -> "ReasoningGymSuite":
        """Build from a `ReasoningGymSuiteConfig` (preset `prorl96`: the 96 ProRL tasks, default
        configs, with the held-out overrides and the small tasks of suites/reasoning_gym_tasks.py)."""
        workers = cfg.workers or os.cpu_count() or 1
        if cfg.preset == "prorl96":
            return cls([(name, {}) for name in PRORL_TASKS], seed, cfg.heldout_fraction, dict(HELDOUT_FRACTION),
                       small_tasks=frozenset(TOO_FEW_QUESTIONS), workers=workers)
        return cls([(t.name, dict(t.config)) for t in cfg.tasks], seed, cfg.heldout_fraction, workers=workers)


GENERATING_LIBRARIES = ("reasoning-gym", "sympy", "numpy")
"""Distributions whose code makes the items (reasoning-gym's generators compute answers with sympy
and draw with numpy): their versions are in the item cache's key."""


def generator_versions() -> dict[str, str]:
    """Installed versions of `GENERATING_LIBRARIES` ("" for one not installed)."""
    out = {}
    for dist in GENERATING_LIBRARIES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = ""
    return out


def _plain(entry: dict) -> dict:
    """Entry with only what scoring needs, so items stay small and picklable."""
    return {"question": entry["question"], "answer": entry["answer"], "metadata": entry["metadata"]}
