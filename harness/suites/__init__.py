"""Evaluation and reward suites; the same scorer serves training rewards and evaluation scores.

`build_suite(name, config)` returns a suite configured by a profile: `math` and `code` (the
paper's benchmarks, or seeded tiny problems in the same formats) and `reasoning_gym`.
"""

from __future__ import annotations

import functools

from harness.suites.base import Item, ScoreResult, Suite

SUITES = ("math", "code", "reasoning_gym")
"""Table 2's domains, in its column order."""


def procedural_registry(domain: str) -> dict:
    """Tiny generator tasks of `math` or `code`, by name."""
    if domain == "math":
        from harness.suites.tiny_math import TASKS
    else:
        from harness.suites.tiny_code import TASKS
    return TASKS


def build_suite(name: str, config) -> Suite:
    """The suite `name` as the profile `config` (a harness Config) defines it."""
    if name == "reasoning_gym":
        from harness.suites.reasoning_gym import ReasoningGymSuite

        return ReasoningGymSuite.from_config(config.suites.reasoning_gym, seed=config.seed)
    if name == "math":
        from harness.suites import math, tiny_math

        cfg = config.suites.math
        if cfg.source == "procedural":
            return tiny_math.TinyMathSuite(
                [(t.name, tiny_math.task_generator(t.name, t.config)) for t in cfg.tasks], config.seed, cfg.heldout_fraction)
        return _benchmark_suite("math", math.score, math.load_benchmark, cfg)
    if name == "code":
        from harness.suites import code, tiny_code

        cfg = config.suites.code
        scorer = functools.partial(code.score, timeout_s=cfg.test_timeout_s, one_process=cfg.tests_in_one_process)
        if cfg.source == "procedural":
            tasks = [(t.name, tiny_code.task_generator(t.name, t.config)) for t in cfg.tasks]
            suite = tiny_code.TinyCodeSuite(tasks, config.seed, cfg.heldout_fraction)
            suite.scorer = scorer
            suite.scorer_timeout_s = code.call_timeout_s(tiny_code.max_tests(cfg.tasks), cfg.test_timeout_s)
            return suite
        suite = _benchmark_suite("code", scorer, code.load_benchmark, cfg)
        longest = max((len(it.reference) for items in suite.benchmarks.values() for it in items), default=1)
        suite.scorer_timeout_s = code.call_timeout_s(longest, cfg.test_timeout_s)
        return suite
    raise ValueError(f"unknown suite '{name}'; valid: {', '.join(SUITES)}")


def _benchmark_suite(name, scorer, load, cfg):
    from harness.suites.benchmarks import BenchmarkSuite

    path = cfg.data_dir or None
    return BenchmarkSuite(name, scorer, {b: load(b, path) for b in cfg.benchmarks})


__all__ = ["SUITES", "Item", "ScoreResult", "Suite", "build_suite", "procedural_registry"]
