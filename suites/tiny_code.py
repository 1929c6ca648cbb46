"""Tiny-scale code: procedural, seeded stdin -> stdout problems in the paper's format.

A response holds a fenced Python program; `suites.code.score` runs it in the sandbox on each
input/output test and rewards the fraction passed, exactly as for codeforces or taco. The
supervised target is the short program itself (a few tens of tokens). Difficulty grows with the
number of operations a program must chain, so a task mixes easy items with a hard tail.

Tasks:
- `affine`: read an integer n, print an expression of n with `min_ops`..`max_ops` operations;
- `list_stat`: read a line of integers, print their sum, maximum, minimum, count of even numbers,
  or sum of squares;
- `string_op`: read a word, print it reversed, upper-cased, its length, or it repeated k times.
"""

from __future__ import annotations

import inspect
import random
from typing import Any, Iterator

from harness.config import ConfigError
from suites import code
from suites.procedural import Draw, ProceduralSuite, task_from_registry

_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def affine(seed: int, min_ops: int = 1, max_ops: int = 3, max_constant: int = 9, tests: int = 3) -> Iterator[Draw]:
    """Print n op c1 op c2 ... evaluated left to right (earlier steps parenthesised)."""
    rng = random.Random(seed)
    while True:
        k = rng.randint(min_ops, max_ops)
        ops = [(rng.choice("+-*"), rng.randint(2, max_constant)) for _ in range(k)]
        expr = "n"
        for i, (op, c) in enumerate(ops):
            expr = f"{expr} {op} {c}" if i == 0 else f"({expr}) {op} {c}"
        question = f"Read an integer n from standard input and print {expr}."
        body = f"n = int(input())\nprint({expr})"
        inputs = [str(rng.randint(-20, 50)) for _ in range(tests)]
        yield _draw(question, body, inputs)


_STATS = {
    "sum": ("their sum", "print(sum(a))"),
    "max": ("their maximum", "print(max(a))"),
    "min": ("their minimum", "print(min(a))"),
    "even": ("how many of them are even", "print(sum(1 for x in a if x % 2 == 0))"),
    "squares": ("the sum of their squares", "print(sum(x * x for x in a))"),
}


def list_stat(seed: int, stats: str = "sum,max,min,even,squares", max_len: int = 6, tests: int = 3) -> Iterator[Draw]:
    """Read space-separated integers from one line and print a statistic of them."""
    names = [s.strip() for s in stats.split(",") if s.strip()]
    unknown = [s for s in names if s not in _STATS]
    if unknown or not names:
        raise ConfigError(f"tiny code task 'list_stat': unknown stats {unknown or stats!r}; valid: {', '.join(_STATS)}")
    rng = random.Random(seed)
    while True:
        what, line = _STATS[rng.choice(names)]
        scale, shift = rng.randint(2, 12), rng.randint(1, 40)
        question = (f"Read integers separated by spaces from one line, replace each x by {scale} * x + {shift}, "
                    f"and print {what}.")
        body = f"a = [{scale} * int(x) + {shift} for x in input().split()]\n{line}"
        inputs = [" ".join(str(rng.randint(-9, 30)) for _ in range(rng.randint(1, max_len))) for _ in range(tests)]
        yield _draw(question, body, inputs)


_STRING_OPS = {
    "reverse": ("the word reversed", "s[::-1]"),
    "upper": ("the word in upper case", "s.upper()"),
    "double": ("every letter of the word twice", '"".join(c + c for c in s)'),
}


def string_op(seed: int, max_repeat: int = 3, tests: int = 3) -> Iterator[Draw]:
    """Read a word and print a transformation of it, repeated, followed by a fixed suffix."""
    rng = random.Random(seed)
    while True:
        what, expr = _STRING_OPS[rng.choice(sorted(_STRING_OPS))]
        repeat = rng.randint(1, max_repeat)
        suffix = "".join(rng.choice(_ALPHABET) for _ in range(2))
        times = "" if repeat == 1 else f" {repeat} times"
        question = f"Read a word from standard input and print {what}{times}, then the letters {suffix}, with no spaces."
        product = expr if repeat == 1 else f"{expr} * {repeat}"
        body = f"s = input()\nprint({product} + \"{suffix}\")"
        inputs = ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(2, 8))) for _ in range(tests)]
        yield _draw(question, body, inputs)


TASKS = {"affine": affine, "list_stat": list_stat, "string_op": string_op}
"""Generator functions by task name; each takes (seed, **config)."""


def task_generator(name: str, config: dict[str, Any]):
    """The task `name` with its config, as a seed -> draws function (suites/procedural.py)."""
    return task_from_registry("tiny code", TASKS, name, config)


INSTRUCTION = "Answer with a Python program in a ```python code block."
"""Shorter than the full-scale instruction (suites/code.py): the tiny model's context is short and
the prompt is re-read in every sequence of training; the response format is the same."""


def _draw(question: str, body: str, inputs: list[str]) -> Draw:
    """Tests come from running the reference program in-process (it is ours, not a model's)."""
    tests = [{"input": x, "output": _run_reference(body, x)} for x in inputs]
    return Draw(question=question, prompt=f"{question}\n{INSTRUCTION}", reference=tests,
                target=f"```python\n{body}\n```")


def _run_reference(body: str, stdin: str) -> str:
    lines = iter(stdin.splitlines() or [""])
    printed: list[str] = []
    exec(body, {"input": lambda: next(lines), "print": lambda *a: printed.append(" ".join(map(str, a)))})
    return "\n".join(printed)


def max_tests(tasks) -> int:
    """Most tests any configured task gives an item (bounds a score call's duration)."""
    return max(t.config.get("tests", inspect.signature(TASKS[t.name]).parameters["tests"].default) for t in tasks)


class TinyCodeSuite(ProceduralSuite):
    """The `code` suite of the tiny profiles: these tasks, scored by `suites.code.score`."""

    name = "code"
    scorer = staticmethod(code.score)
