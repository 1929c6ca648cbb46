"""No held-out question is a training question in disguise, across every procedural task of a profile.

The procedural suites (suites/procedural.py) put each question in train, validation or eval by a
hash of its canonical problem (`canonical_problem`), the same function for every task of every
suite. Different tasks word one problem differently ("Compute 35 - 2." in tiny math, "Calculate
35 - 2." in reasoning-gym basic_arithmetic): hashed by raw text, such a pair could land on both
sides of the split. These tests build what a profile trains on (bootstrap items and the RL prompt
pool) and what it validates and evaluates on, and count for every ordered pair (held-out task,
training task) the held-out items whose canonical problem is also a training item's.
"""

from __future__ import annotations

import functools
from collections import defaultdict

import pytest

from harness.config import load_config
from suites import build_suite
from suites.math import MATH_INSTRUCTION
from suites.procedural import Draw, ProceduralSuite, canonical_problem
from suites.tiny_code import INSTRUCTION as CODE_INSTRUCTION

PROFILES = ("tiny", "smoke")


def question(suite: str, item) -> str:
    """The question text an item was made from (what the split looks at)."""
    if suite == "reasoning_gym":
        return item.reference["question"]
    suffix = f" {MATH_INSTRUCTION}" if suite == "math" else f"\n{CODE_INSTRUCTION}"
    assert item.prompt.endswith(suffix), item.prompt
    return item.prompt[: -len(suffix)]


def validation_items(cfg) -> int:
    """Validation items per suite that the bootstrap checks (harness/jobs/base_model.py, Validation)."""
    return -(-max(cfg.bootstrap.check_items, cfg.bootstrap.plateau.check_items) // len(cfg.suites.enabled))


@functools.lru_cache(maxsize=None)
def profile_items(profile: str) -> dict[str, dict[str, list[str]]]:
    """{"train" | "heldout": {"suite/task": [question, ...]}} for every procedural suite of `profile`.

    `train` is what the profile trains on: the first max(prompt_pool, train_items_per_task x tasks)
    train items of each suite (the bootstrap's items and the RL prompt pool are both prefixes of that
    stream). `heldout` is the eval items the profile evaluates and the validation items the bootstrap
    checks.
    """
    cfg = load_config(profile)
    out: dict[str, dict[str, list[str]]] = {"train": defaultdict(list), "heldout": defaultdict(list)}
    n_validation = validation_items(cfg)
    for name in cfg.suites.enabled:
        suite = build_suite(name, cfg.suites, cfg.seed)
        if not isinstance(suite, ProceduralSuite):
            continue
        n_train = max(cfg.train.prompt_pool, cfg.bootstrap.train_items_per_task * len(suite.tasks))
        held = suite.items("eval", getattr(cfg.suites, name).eval_items) + suite.items("validation", n_validation)
        for split, items in (("train", suite.items("train", n_train)), ("heldout", held)):
            for item in items:
                out[split][f"{name}/{item.task}"].append(question(name, item))
    return out


def overlaps(profile: str) -> dict[tuple[str, str], tuple[int, int, str]]:
    """(held-out task, training task) -> (held-out items whose canonical problem the training task
    has, held-out items of that task, an example question) for every ordered pair of tasks."""
    items = profile_items(profile)
    train_keys = {task: {canonical_problem(q) for q in qs} for task, qs in items["train"].items()}
    out = {}
    for held_task, questions in items["heldout"].items():
        for train_task, keys in train_keys.items():
            shared = [q for q in questions if canonical_problem(q) in keys]
            out[held_task, train_task] = (len(shared), len(questions), shared[0] if shared else "")
    return out


# -- the canonical form ------------------------------------------------------------------------------

@pytest.mark.parametrize("questions", [
    ("Compute 35 - 2.", "Calculate 35 - 2.", "State the final answer to the following arithmetic problem: 35 - 2 ="),
    ("Compute 16 - 9 + 10 * 19 + 17.", "Calculate 16 - 9 + 10 * 19 + 17.",
     "State the final answer to the following arithmetic problem: 16 - 9 + 10 * 19 + 17 ="),
    ("Solve for x: 10x - 3 = 227.", "solve for x:  10x-3 = 227"),
    ("Compute 3 × 4 − 1.", "Calculate 3 * 4 - 1."),
    ("How many 1 bits are there in the binary representation of the number 167?",
     "how many 1 bits are there in the binary representation of the number  167"),
])
def test_paraphrases_share_a_key(questions):
    assert len({canonical_problem(q) for q in questions}) == 1, [canonical_problem(q) for q in questions]


def test_distinct_problems_keep_distinct_keys():
    questions = [
        "Compute 35 - 2.", "Compute 35 + 2.", "Compute 3 - 52.", "Compute 35 - 2 * 4.",
        "Solve for x: 10x - 3 = 227.", "Solve for x: 10x + 3 = 227.",
        "Read an integer n from standard input and print (n + 5) * 6.",
        "Read an integer n from standard input and print n + 5 * 6.",
        "Read integers separated by spaces from one line, replace each x by 6 * x + 40, and print their maximum.",
        "Read integers separated by spaces from one line, replace each x by 6 * x + 40, and print their minimum.",
        "Read a word from standard input and print the word reversed 3 times, then the letters bt, with no spaces.",
        "Read a word from standard input and print the word reversed 2 times, then the letters bt, with no spaces.",
        "How many 1 bits are there in the binary representation of the number 167?",
        "How many 1 bits are there in the binary representation of the number 202?",
        # text around expressions that are not the problem (reasoning-gym prime_factorization, number_format,
        # figlet_font, shortest_path): the whole text is the key
        "Find the prime factorization of 10. Write the factors separated by × (Example: 2 × 2 × 3)",
        "Find the prime factorization of 14. Write the factors separated by × (Example: 2 × 2 × 3)",
        "Pick the smallest number of the following candidates: 91585695.82 9.158569304099999e+07",
        "Pick the smallest number of the following candidates: 91585695.83 9.158569304099999e+07",
        "What word does this say?\n\n=== ==\n== =",
        "What word does this say?\n\n== ===\n= ==",
        "Find the shortest path from * to # in the following grid:\n# X O\nO O X\nO * O",
        "Find the shortest path from * to # in the following grid:\n# O O\nO X X\nO * O",
    ]
    assert len({canonical_problem(q) for q in questions}) == len(questions)


# -- the splits of each profile ----------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_no_heldout_item_is_a_training_problem_of_any_task(profile):
    found = overlaps(profile)
    tasks = set(profile_items(profile)["train"])
    assert set(found) == {(a, b) for a in tasks for b in tasks}
    leaks = [f"{held} held-out vs {train} training: {n}/{total}, e.g. {example!r} "
             f"(key {canonical_problem(example)!r})"
             for (held, train), (n, total, example) in sorted(found.items()) if n]
    if leaks:
        pytest.fail(f"{profile}: held-out items whose problem a training item has:\n" + "\n".join(leaks))


@pytest.mark.parametrize("profile", PROFILES)
def test_heldout_items_are_unique_problems_within_a_task(profile):
    cfg = load_config(profile)
    for name in cfg.suites.enabled:
        suite = build_suite(name, cfg.suites, cfg.seed)
        for split, n in (("eval", getattr(cfg.suites, name).eval_items), ("validation", validation_items(cfg))):
            by_task = defaultdict(list)
            for item in suite.items(split, n):
                by_task[item.task].append(canonical_problem(question(name, item)))
            for task, keys in by_task.items():
                assert len(set(keys)) == len(keys), f"{profile} {name}/{task} {split}: repeated problems"


class _Paraphrases(ProceduralSuite):
    name = "paraphrases"
    scorer = staticmethod(lambda response, reference: None)


def _two_wordings(seed: int):
    """Each problem a + b twice in a row, in two wordings (as two suites would ask it)."""
    import random

    rng = random.Random(seed)
    while True:
        a, b = rng.randint(0, 30), rng.randint(0, 30)
        for text in (f"Compute {a} + {b}.", f"State the final answer to the following problem: {a} + {b} ="):
            yield Draw(question=text, prompt=text, reference=str(a + b), target=str(a + b))


def test_paraphrases_are_one_heldout_problem_and_one_split():
    suite = _Paraphrases([("sum", _two_wordings)], seed=0)
    held = suite.items("eval", 40) + suite.items("validation", 10)
    keys = [canonical_problem(it.prompt) for it in held]
    assert len(set(keys)) == len(keys)
    train = {canonical_problem(it.prompt) for it in suite.items("train", 2000)}
    assert len(train) > 300 and not train & set(keys)


def test_heldout_overrides_ask_word_problems():
    """Limit of the split (suites/procedural.py): a task with its own heldout_fraction must not share
    keys with other tasks. The override tasks' keys are their whole text, not an expression, so only
    a task asking the very same text could share one."""
    from suites.reasoning_gym import ReasoningGymSuite
    from suites.reasoning_gym_tasks import HELDOUT_FRACTION

    for name, fraction in HELDOUT_FRACTION.items():
        suite = ReasoningGymSuite([(name, {})], seed=0, heldout_fraction=fraction)
        for item in suite.items("train", 30):
            q = item.reference["question"]
            assert canonical_problem(q) == " ".join(q.lower().split()).rstrip(" .?!"), f"{name}: {q!r}"
