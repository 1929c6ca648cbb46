"""Evaluation and reward suites, the pluggable domains the harness trains and evaluates on; the same
scorer serves training rewards and evaluation scores.

`build_suite(name, suites, seed)` returns a suite as the profile's `suites` section defines it: `math` and `code` (the
paper's benchmarks, with training data from `train_data` when given, or seeded tiny problems in the same formats) and
`reasoning_gym`.

Adding a suite (a new benchmark or domain), in three parts:
1. Items: a class satisfying `suites.base.Suite`: `items(split, n)` gives `Item`s (stable ids, the prompt,
   the reference the scorer needs) for the `train`, `validation` and `eval` splits, deterministic from the seed
   and split by a canonical form of the problem (`procedural.ProceduralSuite` does this for generated tasks,
   `benchmarks.BenchmarkSuite` for files).
2. A scorer: a pure, picklable `score(response, reference) -> ScoreResult` in its own module (as `math.py`,
   `code.py`); the harness always runs it in the bounded pool, for rewards and for evaluation alike.
3. Registration: its name in `SUITES` and a branch of `build_suite`; its settings as a section of
   `harness.config.schema.SuitesConfig` (each field documented); task names checked in `check_suites`.
This package builds on the harness's foundation only (config, execution, run layout, codec): never on trainers or jobs.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path

from harness.config import ConfigError, SuitesConfig
from suites import code, math, tiny_code, tiny_math, train_data
from suites.base import Item, ScoreResult, Suite
from suites.benchmarks import BenchmarkSuite
from suites.item_cache import ItemCache

SUITES = ("math", "code", "reasoning_gym")
"""Table 2's domains, in its column order."""


def procedural_registry(domain: str) -> dict:
    """Tiny generator tasks of `math` or `code`, by name."""
    return tiny_math.TASKS if domain == "math" else tiny_code.TASKS


def check_suites(suites: SuitesConfig, reasoning_gym: bool = True) -> None:
    """Refuse, in one line (ConfigError), a task name no suite knows: reasoning-gym datasets and the
    tiny procedural tasks of `math` and `code`; and (DatasetError) training data of `math` and `code`
    that is missing, of an unknown format, empty or without the needed columns in its first row
    (`train_data.check_source`; the full read comes on first use). `reasoning_gym`: check its task
    names too (importing reasoning-gym). The commands that build suites call it right after loading
    a profile, before anything is written (commands that build none, such as `plan` and `bench
    --shape`, do not, so they run without reasoning-gym); `build_suite` calls it, checking
    reasoning-gym's names only when it builds that suite."""
    if reasoning_gym:
        from suites.reasoning_gym import check_task_name  # lazy: reasoning_gym takes seconds to import

        for task in suites.reasoning_gym.tasks:
            check_task_name(task.name)
    for domain in ("math", "code"):
        registry = procedural_registry(domain)
        for i, task in enumerate(getattr(suites, domain).tasks):
            if task.name not in registry:
                raise ConfigError(f"invalid value for 'suites.{domain}.tasks[{i}].name': {task.name!r}; "
                                  f"valid: {', '.join(registry)}")
        cfg = getattr(suites, domain)
        if cfg.train_data:
            if cfg.source != "benchmarks":
                raise ConfigError(f"invalid value for 'suites.{domain}.train_data': {cfg.train_data!r}; it is read only with "
                                  f"suites.{domain}.source=benchmarks (procedural tasks make their own training items)")
            train_data.check_source(domain, cfg.train_data)


def build_suite(name: str, suites: SuitesConfig, seed: int, cache_dir: str | Path | None = None) -> Suite:
    """The suite `name` as the `suites` section defines it; `seed` (the profile's master seed)
    fixes its items and their split. With `cache_dir` (the harness cache, `Config.resolved_cache_dir()`:
    the jobs pass it) its procedural items and training data are built once and kept there
    (suites/item_cache.py); without, they are built on every call."""
    check_suites(suites, reasoning_gym=name == "reasoning_gym")
    cache = ItemCache(cache_dir) if cache_dir else None
    if name == "reasoning_gym":
        from suites.reasoning_gym import ReasoningGymSuite, generator_versions  # lazy: reasoning_gym takes seconds to import

        suite = ReasoningGymSuite.from_config(suites.reasoning_gym, seed=seed)
        suite.use_cache(cache, {"section": _shaping(suites.reasoning_gym), "versions": generator_versions()})
        return suite
    if name == "math":
        cfg = suites.math
        math.load_verifier()
        if cfg.source == "procedural":
            suite = tiny_math.TinyMathSuite(
                [(t.name, tiny_math.task_generator(t.name, t.config)) for t in cfg.tasks], seed, cfg.heldout_fraction)
            suite.use_cache(cache, {"section": _shaping(cfg)})
            return suite
        return _benchmark_suite("math", math.score, math.load_benchmark, cfg, seed, cache)
    if name == "code":
        cfg = suites.code
        scorer = functools.partial(code.score, timeout_s=cfg.test_timeout_s, one_process=cfg.tests_in_one_process)
        if cfg.source == "procedural":
            tasks = [(t.name, tiny_code.task_generator(t.name, t.config)) for t in cfg.tasks]
            suite = tiny_code.TinyCodeSuite(tasks, seed, cfg.heldout_fraction)
            suite.scorer = scorer
            suite.scorer_timeout_s = code.call_timeout_s(tiny_code.max_tests(cfg.tasks), cfg.test_timeout_s)
            suite.use_cache(cache, {"section": _shaping(cfg)})
            return suite
        return _benchmark_suite("code", scorer, code.load_benchmark, cfg, seed, cache,
                                bound=functools.partial(_code_bound, cfg.test_timeout_s))
    raise ValueError(f"unknown suite '{name}'; valid: {', '.join(SUITES)}")


NOT_SHAPING = ("workers", "eval_items", "test_timeout_s", "tests_in_one_process")
"""Fields of a suite's section that change no item (how many processes make them, how many eval
items are asked for: `n` is in the key on its own, how responses are scored): left out of the item
cache's key, so changing them reuses the cached items. Every other field is in the key."""


def _shaping(section) -> dict:
    return {k: v for k, v in asdict(section).items() if k not in NOT_SHAPING}


def _benchmark_suite(name, scorer, load, cfg, seed, cache, bound=None):
    path = cfg.data_dir or None
    benchmarks = {b: load(b, path) for b in cfg.benchmarks}
    training = (train_data.TrainingData(name, cfg.train_data, benchmarks, seed, cfg.validation_items, cache=cache)
                if cfg.train_data else None)
    return BenchmarkSuite(name, scorer, benchmarks, training=training, bound=bound)


def _code_bound(test_timeout_s: float, items: list[Item]) -> float:
    """Scorer bound for code items: enough for the one with the most tests (code.call_timeout_s)."""
    return code.call_timeout_s(max((len(it.reference) for it in items), default=1), test_timeout_s)


__all__ = ["SUITES", "Item", "ScoreResult", "Suite", "build_suite", "check_suites", "procedural_registry"]
