"""Seeded procedural suites: items drawn from generators, split by a hash of the underlying problem.

Reasoning Gym and the tiny math and code suites all work this way. A task is a generator: given a
seed stream it yields questions with what their scorer needs. Splits never share a problem. Each
split draws from its own seed stream, and on top of that every question is assigned to exactly
one split by a hash of its canonical problem (`canonical_problem`: "Compute 35 - 2." in tiny math
and "Calculate 35 - 2." in reasoning-gym basic_arithmetic are one problem, "35-2"), the same
function for every task of every suite, so one problem lands in one split whichever task words it
(`validation` and `eval` hold `heldout_fraction` of the problem space, `train` the rest). Small
problem spaces repeat questions across seeds, so seeds alone would let the eval measure recall
(REFERENCE.md, "Tiny-scale feasibility"). Held-out items are unique by canonical problem within a
task. tests/test_splits.py checks, for the tiny and smoke profiles, that no held-out item of any
task is the problem of a training item of any task.

Limit: a task's `heldout_fraction` override (`task_heldout`; suites/reasoning_gym_tasks.py
HELDOUT_FRACTION under preset prorl96) moves the train/held-out boundary for that task alone, so a
problem whose bucket lies between two tasks' fractions would be held out by one and trained on by
the other if both tasks produced it. The override tasks (string_splitting, string_synthesis) ask
word problems whose keys are their own text, which no other task produces (tests/test_splits.py
checks that their keys are not arithmetic expressions).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from harness.config import ConfigError
from harness.execution import lifeline
from suites.base import SPLITS, Item, ScoreResult, Split
from suites.item_cache import ItemCache

VALIDATION_SHARE = 0.2
"""Part of the held-out question space given to `validation` (the rest is `eval`)."""

_SPLIT_SEED_OFFSET = {"train": 0, "validation": 1_000_003, "eval": 2_000_029}


@dataclass(frozen=True)
class Draw:
    """One generated question."""

    question: str
    """The question text: its canonical problem is what the split hash and deduplication look at."""
    prompt: str
    """User message (the question with the suite's answer-format instruction)."""
    reference: Any
    """What the suite's scorer compares against."""
    target: str
    """A correct response (supervised warm-up target)."""


Generator = Callable[[int], Iterator[Draw]]
"""A task: seed -> endless (or long) stream of draws, deterministic from the seed."""


_NUMBER = r"\d+(?:\.\d+)?(?:e[-+]?\d+)?"
_OPERAND = rf"[-(\s]*(?:{_NUMBER}(?!e[-+]?\d)[a-z]?|[a-z])(?![a-z])[)\s]*"
"""A number (1.2e+07 is one), a number with a variable (4x), or a single letter (n)."""
_OPERATOR = r"(?:\*\*|[-+*/^%=])"
_CLOSING_EXPRESSION = re.compile(rf"(?:^|(?<=[\s:]))((?:{_OPERAND}{_OPERATOR})+{_OPERAND})(?:=\s*)?$")
_TRAILING = re.compile(r"[\s.?!]+$")
_SYMBOLS = str.maketrans({"\u2212": "-", "\u00d7": "*", "\u00f7": "/"})


def canonical_problem(question: str) -> str:
    """The underlying problem of a question, as a key: paraphrases of one problem share it.

    Rule: lower-case, map the symbols − × ÷ to - * /, collapse whitespace, and strip trailing
    whitespace and . ? !. If the text then ends with an arithmetic expression, optionally followed
    by "=" (operands: numbers, numbers with a variable like 4x, single letters like n; at least one
    of + - * / ^ % ** = between them; unary minus and balanced parentheses allowed), the key is that
    expression without whitespace and the lead-in is dropped: "Compute 35 - 2.", "Calculate 35 - 2."
    and "State the final answer to the following arithmetic problem: 35 - 2 =" are all "35-2",
    "Solve for x: 4x + 3 = 27." is "4x+3=27", "... and print (n + 5) * 6." is "(n+5)*6".
    Otherwise the key is the normalised text itself.

    Limits. Merging two problems into one key only puts them in the same split; splitting one
    problem into two keys is what lets an eval question be a training question. So the rule errs
    towards merging: the lead-in before a closing expression is ignored even where it matters
    ("round to 2 places: 1 / 3" and "round to 3 places: 1 / 3" share a key). Merging has a cost all
    the same (fewer distinct problems per task; a task whose questions all ended with one fixed
    expression would collapse to one key), so the whole text is the key when the closing expression
    is only part of the problem: one followed by more text ("replace each x by 6 * x + 40, and print
    their maximum"), one closing a parenthesis it did not open (prime_factorization ends every
    question with "(Example: ... 2 × 2 × 3)"), one without a digit (shortest_path's grids end in
    rows like "O O * O"). On up to 600 draws of each of the 96 prorl96 tasks the keys are as many
    as the distinct questions. The rule does not see through algebra (3 + 4 vs 4 + 3, 4x vs 4*x),
    number words, an instruction after the expression ("Solve the following multiplication: 12 * 34.
    Give only the result.", reasoning-gym products, keys on its whole text), or rewordings of word
    problems: those stay distinct keys, and tasks that word one problem so differently would leak.
    """
    text = _TRAILING.sub("", " ".join(question.lower().translate(_SYMBOLS).split()))
    match = _CLOSING_EXPRESSION.search(text)
    if match and _balanced(match.group(1)) and any(c.isdigit() for c in match.group(1)):
        return "".join(match.group(1).split())
    return text


def _balanced(expression: str) -> bool:
    depth = 0
    for c in expression:
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth < 0:
            return False
    return depth == 0


def question_bucket(question: str) -> float:
    """Deterministic position of a question's canonical problem in [0, 1), independent of seeds,
    tasks and Python's hash: paraphrases of one problem get the same position."""
    return _key_bucket(canonical_problem(question))


def split_of(question: str, heldout_fraction: float) -> Split:
    return _key_split(canonical_problem(question), heldout_fraction)


def _key_bucket(key: str) -> float:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _key_split(key: str, heldout_fraction: float) -> Split:
    u = _key_bucket(key)
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
    fixed_hash_seed: bool = False
    """Whether the tasks' generators depend on Python's string hash seed (see `generate_items`)."""

    def __init__(
        self,
        tasks: list[tuple[str, Generator]],
        seed: int,
        heldout_fraction: float = 0.3,
        scorer_timeout_s: float | None = None,
        task_heldout: dict[str, float] | None = None,
        small_tasks: frozenset[str] = frozenset(),
        workers: int = 1,
    ):
        if not tasks:
            raise ValueError(f"suite '{self.name}' needs at least one task")
        self.tasks = tasks
        self.seed = seed
        self.heldout_fraction = heldout_fraction
        self.task_heldout = task_heldout or {}
        """Per-task overrides of heldout_fraction (tasks with a small question space)."""
        self.small_tasks = small_tasks
        """Tasks whose whole held-out question space is smaller than a split may ask for: they give
        every distinct question of the split that their first draws hold, instead of failing."""
        self.workers = workers
        """Processes that generate the tasks' items (1: in this one; see `generate_items`)."""
        self.scorer_timeout_s = scorer_timeout_s
        self.cache: ItemCache | None = None
        """Where built items are kept (`use_cache`); None: built on every call."""
        self.cache_key: dict = {}

    def use_cache(self, cache: ItemCache | None, identity: dict) -> None:
        """Keep the items of every `items` call in `cache` (suites/item_cache.py). `identity` is what
        determines the generators that the suite's own attributes do not name: the item-shaping
        fields of its config section (the tasks' configs), the generating libraries' versions."""
        self.cache = cache
        self.cache_key = {"suite": self.name, "seed": self.seed, "tasks": [name for name, _ in self.tasks],
                          "heldout_fraction": self.heldout_fraction, "task_heldout": dict(sorted(self.task_heldout.items())),
                          "small_tasks": sorted(self.small_tasks), **identity}

    def items(self, split: Split, n: int, unique: bool | None = None) -> list[Item]:
        """The first `n` items of `split`, tasks interleaved round-robin (fewer where a small task has
        fewer distinct held-out questions than its share); from the item cache where one is set.

        Held-out splits are unique by canonical problem by default; `train` may repeat questions.
        """
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        unique = split != "train" if unique is None else unique
        if self.cache is None:
            return self.fresh_items(split, n, unique)
        return self.cache.items(f"{self.name} {split} {n}", {**self.cache_key, "split": split, "n": n, "unique": unique},
                                lambda: self.fresh_items(split, n, unique))

    def fresh_items(self, split: Split, n: int, unique: bool) -> list[Item]:
        """`items` made by the generators, never from the cache."""
        k = len(self.tasks)
        per_task = [n // k + (1 if i < n % k else 0) for i in range(k)]
        requests = [TaskRequest(
            suite=self.name, task=task_name, generate=generate,
            seed=self.seed * 7919 + i * 104_729 + _SPLIT_SEED_OFFSET[split], split=split, n=m, unique=unique,
            heldout=self.task_heldout.get(task_name, self.heldout_fraction),
            small=task_name in self.small_tasks,
        ) for i, ((task_name, generate), m) in enumerate(zip(self.tasks, per_task))]
        streams = generate_items(requests, self.workers, self.fixed_hash_seed)
        out: list[Item] = []
        for row in range(max(per_task, default=0)):
            out.extend(stream[row] for stream in streams if row < len(stream))
        return out

    def score(self, response: str, item: Item) -> ScoreResult:
        return self.scorer(response, item.reference)


@dataclass(frozen=True)
class TaskRequest:
    """The items one task gives to one `ProceduralSuite.items` call."""

    suite: str
    """Suite name (the items' id prefix)."""
    task: str
    """Task name."""
    generate: Generator
    """The task's generator (picklable, e.g. a functools.partial of a module-level function, when
    the request runs in a worker process)."""
    seed: int
    """Seed of the task's stream for this split."""
    split: Split
    """The split whose questions are kept."""
    n: int
    """Items asked for."""
    unique: bool
    """Keep each canonical problem once."""
    heldout: float
    """The task's held-out fraction."""
    small: bool
    """Return what the first draws hold when the task has fewer than `n` distinct questions."""


def task_items(request: TaskRequest) -> list[Item]:
    """The first `request.n` items of the task's split, from at most max(1000, 200 n) draws."""
    r = request
    max_draws = max(1000, 200 * r.n)
    seen: set[str] = set()
    out: list[Item] = []
    if r.n == 0:
        return out
    for _, draw in zip(range(max_draws), r.generate(r.seed)):
        key = canonical_problem(draw.question)
        if _key_split(key, r.heldout) != r.split or (r.unique and key in seen):
            continue
        seen.add(key)
        out.append(Item(
            id=f"{r.suite}/{r.task}/{r.split}/{len(out)}", task=r.task,
            prompt=draw.prompt, reference=draw.reference, target=draw.target,
        ))
        if len(out) == r.n:
            return out
    if r.small and out:
        return out
    raise ConfigError(
        f"{r.suite} task '{r.task}' yields only {len(out)} distinct {r.split} questions of the "
        f"{r.n} asked for; widen its config or lower the item count"
    )


def generate_items(requests: list[TaskRequest], workers: int, fixed_hash_seed: bool = False) -> list[list[Item]]:
    """`task_items` of every request, in order: here, or in `workers` processes (one task each at a
    time) when more than one task has items to make. Same items either way: every task
    draws from its own seeded stream. Worth it where generators are slow (the 96 Reasoning Gym tasks
    of the full-scale profile take about 0.8 s for one draw of each on one core, some of them 0.2 s).

    `fixed_hash_seed`: the generators' output depends on Python's string hash seed (reasoning-gym's
    do: they iterate over sets of strings), so the items are made under PYTHONHASHSEED=0, here when
    this interpreter runs with it, otherwise in fresh interpreters started with it
    (suites/generation_worker.py; about 2-3 s of start-up per call)."""
    busy = [r for r in requests if r.n]
    if fixed_hash_seed and sys.flags.hash_randomization and busy:
        return _in_fresh_interpreters(requests, workers)
    if workers <= 1 or len(busy) < 2:
        return [task_items(r) for r in requests]
    import concurrent.futures  # lazy: only a parallel build needs a process pool
    import multiprocessing

    # fork, as the bounded scorer pool: spawn would re-run the caller's main module in every worker
    # (a script without a __main__ guard fails); the workers run only the generators, never torch or CUDA
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    # the workers die with this process, however it dies (harness/execution/lifeline.py)
    lifeline_args = (lifeline.parent_end(),) if context.get_start_method() == "fork" else None
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(busy)), mp_context=context,
                                                initializer=lifeline.die_with_parent if lifeline_args else None,
                                                initargs=lifeline_args or ()) as pool:
        futures = [pool.submit(task_items, r) if r.n else None for r in requests]
        return [f.result() if f else [] for f in futures]



def _in_fresh_interpreters(requests: list[TaskRequest], workers: int) -> list[list[Item]]:
    """`generate_items` in min(workers, tasks) interpreters started with PYTHONHASHSEED=0, the tasks
    dealt round-robin; a task's error is raised here as it was raised there."""
    import concurrent.futures  # lazy: as in generate_items

    busy = [i for i, r in enumerate(requests) if r.n]
    count = max(1, min(workers, len(busy)))
    groups = [busy[k::count] for k in range(count)]
    env = lifeline.child_environment({**os.environ, "PYTHONHASHSEED": "0"})  # the workers die with this process

    def run(group: list[int]) -> list[list[Item]]:
        done = subprocess.run([sys.executable, "-m", "suites.generation_worker"],
                              input=pickle.dumps([requests[i] for i in group]), capture_output=True, env=env,
                              pass_fds=(lifeline.parent_end(),))
        if done.returncode != 0 or not done.stdout:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"item generation worker failed (exit {done.returncode}): {tail[0]}")
        kind, value = pickle.loads(done.stdout)
        if kind == "error":
            raise value
        return value

    out: list[list[Item]] = [[] for _ in requests]
    with concurrent.futures.ThreadPoolExecutor(len(groups)) as pool:
        for group, items in zip(groups, pool.map(run, groups)):
            for i, made in zip(group, items):
                out[i] = made
    return out


def task_from_registry(suite: str, registry: dict[str, Callable[..., Iterator[Draw]]], name: str,
                       config: dict[str, Any]) -> Generator:
    """Registered generator `name` bound to its config; a wrong name or knob is a one-line ConfigError."""
    if name not in registry:
        raise ConfigError(f"unknown {suite} task '{name}'; valid: {', '.join(registry)}")
    fn = registry[name]
    try:
        inspect.signature(fn).bind(0, **config)
    except TypeError:
        knobs = [p for p in inspect.signature(fn).parameters if p != "seed"]
        raise ConfigError(f"{suite} task '{name}' got config {config}; valid keys: {', '.join(knobs)}") from None
    return lambda seed: fn(seed, **config)
