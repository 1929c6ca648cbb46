"""The tiny procedural math and code suites: correct targets, disjoint splits, clear config errors."""

from __future__ import annotations

import pytest

from harness.config import ConfigError, load_config
from harness.execution.bounded import ScorerPool
from suites import build_suite


@pytest.fixture(scope="module")
def tiny_cfg():
    return load_config("tiny")


@pytest.mark.parametrize("name", ["math", "code", "reasoning_gym"])
def test_targets_score_one_and_splits_are_disjoint(tiny_cfg, name):
    suite = build_suite(name, tiny_cfg.suites, tiny_cfg.seed)
    train = suite.items("train", 300)
    held = suite.items("eval", 30) + suite.items("validation", 30)
    assert not {it.prompt for it in train} & {it.prompt for it in held}
    assert len({it.prompt for it in suite.items("eval", 30)}) == 30
    sample = train[:12] + held[:12]
    with ScorerPool(workers=2, timeout_s=30) as pool:
        results = pool.map(suite.scorer, [(it.target, it.reference) for it in sample], suite.scorer_timeout_s)
    assert [r.status for r in results] == ["correct"] * len(sample)
    assert all(r.reward == 1.0 for r in results)


def test_items_are_deterministic_and_seeded(tiny_cfg):
    a = build_suite("math", tiny_cfg.suites, tiny_cfg.seed).items("eval", 20)
    b = build_suite("math", tiny_cfg.suites, tiny_cfg.seed).items("eval", 20)
    other = build_suite("math", tiny_cfg.suites, seed=1).items("eval", 20)  # another master seed
    assert a == b
    assert [it.prompt for it in a] != [it.prompt for it in other]


def test_math_targets_carry_a_worked_solution(tiny_cfg):
    items = build_suite("math", tiny_cfg.suites, tiny_cfg.seed).items("train", 50)
    assert all(it.target.endswith(f"\\boxed{{{it.reference}}}") for it in items)
    assert sum(it.target.count("=") >= 2 for it in items) > 40  # reasoning steps, not just the answer


def test_wrong_math_and_broken_code_score_zero(tiny_cfg):
    from suites.code import score as code_score
    from suites.math import score as math_score

    item = build_suite("math", tiny_cfg.suites, tiny_cfg.seed).items("eval", 1)[0]
    assert math_score(f"\\boxed{{{int(item.reference) + 1}}}", item.reference).reward == 0.0
    code_item = build_suite("code", tiny_cfg.suites, tiny_cfg.seed).items("eval", 1)[0]
    assert code_score("```python\nprint(input())\n```", code_item.reference).reward < 1.0


@pytest.mark.parametrize("override, needle", [
    ("suites.math.tasks=[{name: calculus}]", "suites.math.tasks[0].name"),
    ("suites.code.tasks=[{name: affine, config: {max_opps: 3}}]", "valid keys: min_ops, max_ops"),
    ("suites.math.benchmarks=[aime23]", "suites.math.benchmarks"),
    ("suites.enabled=[math, physics]", "suites.enabled"),
])
def test_bad_suite_config_is_one_line(override, needle):
    with pytest.raises(ConfigError) as err:
        cfg = load_config("tiny", [override])
        build_suite("code", cfg.suites, cfg.seed)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_benchmark_suites_have_no_training_split(tmp_path):
    (tmp_path / "aime24.jsonl").write_text('{"problem": "1+1?", "answer": "2"}\n')
    cfg = load_config("tiny", ["suites.math.source=benchmarks", "suites.math.benchmarks=[aime24]",
                               f"suites.math.data_dir={tmp_path}"])
    suite = build_suite("math", cfg.suites, cfg.seed)
    assert [it.reference for it in suite.items("eval", 0)] == ["2"]
    with pytest.raises(ConfigError, match="only an eval split"):
        suite.items("train", 10)


@pytest.mark.parametrize("profile", ["tiny", "smoke"])
def test_every_built_suite_satisfies_the_suite_seam(profile):
    """The `Suite` protocol is enforced, not decorative: each suite a profile builds has its
    members, and its scorer takes (response, the item's reference) and returns a ScoreResult."""
    import inspect

    from suites import SUITES
    from suites.base import ScoreResult, Suite

    cfg = load_config(profile)
    for name in SUITES:
        suite = build_suite(name, cfg.suites, cfg.seed)
        assert isinstance(suite, Suite), name
        assert suite.scorer_timeout_s is None or suite.scorer_timeout_s > 0
        fn = getattr(suite.scorer, "func", suite.scorer)  # a functools.partial binds bounds (code)
        params = list(inspect.signature(fn).parameters.values())
        assert params[0].name == "response" and len(params) >= 2, name  # (response, the item's reference, ...)
        item = suite.items("eval", 1)[0]
        assert isinstance(suite.scorer(item.target, item.reference), ScoreResult)
