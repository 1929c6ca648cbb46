"""The bootstrap's plateau test (harness/jobs/base_model.py StallTest): what counts as progress
under each stall rule, and the paired noise it logs beside each gain."""

import math

import pytest

from harness.config import load_config
from harness.jobs.base_model import StallTest, cache_key


def _items(suite: str, scores: list[float]) -> dict[str, float]:
    return {f"{suite}/t/{i}": s for i, s in enumerate(scores)}


def _check(values: dict[str, list[float]]):
    """A validation result: each suite's pass@1 (the mean of its item scores) and the item scores."""
    items = {name: _items(name, scores) for name, scores in values.items()}
    val = {name: sum(s) / len(s) for name, s in values.items()}
    val["all"] = sum(val.values()) / len(val)
    return val, items


FIRST = {"math": [0.0, 0.5, 0.5, 1.0], "code": [0.0, 0.0, 1.0, 1.0]}


def test_each_suite_counts_one_rising_suite_that_the_mean_would_miss():
    first, first_items = _check(FIRST)
    # code +0.125, math -0.1875: the mean falls, one suite rises
    val, items = _check({"math": [0.0, 0.25, 0.25, 0.75], "code": [0.25, 0.25, 1.0, 1.0]})
    each = StallTest("each_suite", 0.02, first, first_items)
    progressed, gains = each.check(val, items)
    assert progressed and set(gains) == {"math", "code"}
    assert gains["code"][0] == pytest.approx(0.125) and gains["math"][0] == pytest.approx(-0.1875)
    mean = StallTest("mean", 0.02, first, first_items)
    progressed, gains = mean.check(val, items)
    assert not progressed and set(gains) == {"all"} and gains["all"][0] == pytest.approx(-0.03125)


def test_a_best_moves_only_on_progress_so_a_slow_creep_is_caught():
    first, first_items = _check(FIRST)
    test = StallTest("each_suite", 0.08, first, first_items)
    creep = [[0.0, 0.0, 1.0, 1.0], [0.0, 0.2, 1.0, 1.0], [0.2, 0.2, 1.0, 1.0]]  # code: +0, +0.05, +0.1 over the start
    outcomes = []
    for code in creep:
        val, items = _check({"math": FIRST["math"], "code": code})
        outcomes.append(test.check(val, items)[0])
    # +0.05 a check is never above 0.08, but +0.1 over the last progress (the start) is
    assert outcomes == [False, False, True]


def test_gains_carry_the_paired_standard_error_of_the_same_items():
    first, first_items = _check(FIRST)
    val, items = _check({"math": [0.25, 0.5, 0.75, 1.0], "code": FIRST["code"]})
    _, gains = StallTest("each_suite", 0.02, first, first_items).check(val, items)
    diffs = [0.25, 0.0, 0.25, 0.0]  # one task: the plain paired SE, sd(diffs) / sqrt(n)
    mean = sum(diffs) / 4
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 3 / 4)
    assert gains["math"] == (pytest.approx(0.125), pytest.approx(se))
    assert gains["code"] == (0.0, 0.0)


def test_the_default_rule_leaves_existing_bases_cache_keys_alone():
    cfg = load_config("tiny")
    each = load_config("tiny", ["bootstrap.plateau.stall_rule=each_suite"])
    assert cfg.bootstrap.plateau.stall_rule == "mean"
    assert cache_key(cfg) == "0a1d3d241f99e9c2"  # the tiny base built before the rule existed
    assert cache_key(each) != cache_key(cfg)
