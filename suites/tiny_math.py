"""Tiny-scale math: procedural, seeded problems in the paper's format (answer in `\\boxed{}`).

Scored by the same `suites.math.score` (math-verify) as AIME or MATH-500. The supervised target
is a short worked solution, a few tens of tokens, so that a response carries reasoning and not
only the answer (REFERENCE.md, "Tiny-scale feasibility": 7-token answers made RL degenerate).
Difficulty is set per task by ranges (more terms, larger numbers), so one task mixes easy items
with a hard tail the base model rarely solves.

Tasks:
- `arithmetic`: an integer expression with + - * and operator precedence;
  "7 * 3 = 21. 12 + 21 = 33. 33 - 5 = 28. \\boxed{28}".
- `linear_equation`: solve a x + b = c for an integer x;
  "4x = 31 - 7 = 24. x = 24 / 4 = 6. \\boxed{6}".
"""

from __future__ import annotations

import random
from typing import Any, Iterator

from harness.config import ConfigError
from suites.math import format_prompt
from suites.math import score as math_score
from suites.procedural import Draw, ProceduralSuite, task_from_registry


def arithmetic(seed: int, min_terms: int = 2, max_terms: int = 4, max_value: int = 20,
               operators: str = "+-*") -> Iterator[Draw]:
    """Expressions of `min_terms`..`max_terms` integers in 1..`max_value`; products first, then
    left to right, one step per operation in the worked solution."""
    _check_range("arithmetic", "terms", min_terms, max_terms, low=2)
    rng = random.Random(seed)
    while True:
        k = rng.randint(min_terms, max_terms)
        terms = [rng.randint(1, max_value) for _ in range(k)]
        ops = [rng.choice(operators) for _ in range(k - 1)]
        question = "Compute " + " ".join(_interleave(terms, ops)) + "."
        steps, value = _evaluate(terms, ops)
        yield _draw(question, steps, value)


def linear_equation(seed: int, max_coefficient: int = 9, max_solution: int = 20,
                    max_offset: int = 30) -> Iterator[Draw]:
    """a x + b = c (or a x - b = c) with integer a in 2..`max_coefficient`, x in 0..`max_solution`."""
    rng = random.Random(seed)
    while True:
        a = rng.randint(2, max_coefficient)
        x = rng.randint(0, max_solution)
        b = rng.randint(1, max_offset)
        if rng.random() < 0.5:
            c = a * x + b
            question = f"Solve for x: {a}x + {b} = {c}."
            steps = [f"{a}x = {c} - {b} = {a * x}."]
        else:
            c = a * x - b
            question = f"Solve for x: {a}x - {b} = {c}."
            steps = [f"{a}x = {c} + {b} = {a * x}."]
        steps.append(f"x = {a * x} / {a} = {x}.")
        yield _draw(question, steps, x)


TASKS = {"arithmetic": arithmetic, "linear_equation": linear_equation}
"""Generator functions by task name; each takes (seed, **config)."""


def task_generator(name: str, config: dict[str, Any]):
    """The task `name` with its config, as a seed -> draws function (suites/procedural.py)."""
    return task_from_registry("tiny math", TASKS, name, config)


def _draw(question: str, steps: list[str], answer: int) -> Draw:
    return Draw(
        question=question,
        prompt=format_prompt(question),
        reference=str(answer),
        target=" ".join(steps) + f" \\boxed{{{answer}}}",
    )


def _interleave(terms: list[int], ops: list[str]) -> list[str]:
    out = [str(terms[0])]
    for op, t in zip(ops, terms[1:]):
        out += [op, str(t)]
    return out


def _evaluate(terms: list[int], ops: list[str]) -> tuple[list[str], int]:
    """Value of the expression and one worked step per operation (products first)."""
    steps: list[str] = []
    values, pending = [terms[0]], []
    for op, t in zip(ops, terms[1:]):
        if op == "*":
            product = values[-1] * t
            steps.append(f"{values[-1]} * {t} = {product}.")
            values[-1] = product
        else:
            pending.append(op)
            values.append(t)
    total = values[0]
    for op, v in zip(pending, values[1:]):
        new = total + v if op == "+" else total - v
        steps.append(f"{total} {op} {v} = {new}.")
        total = new
    if not steps:
        steps.append(f"{total}.")
    return steps, total


def _check_range(task: str, what: str, low_value: int, high_value: int, low: int) -> None:
    if not low <= low_value <= high_value:
        raise ConfigError(f"tiny math task '{task}': need {low} <= min_{what} <= max_{what}, "
                          f"got {low_value} and {high_value}")


class TinyMathSuite(ProceduralSuite):
    """The `math` suite of the tiny profiles: these tasks, scored by `suites.math.score`."""

    name = "math"
    scorer = staticmethod(math_score)
