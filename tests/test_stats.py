"""The comparison's statistics (harness/stats.py) and what the report makes of them, on hand-made
comparison folders: no model is trained here."""

import json
import random

import pytest

from harness.report import ReportError, build_summary, render
from harness.runs import SPEND_RULE
from harness.stats import hierarchical_bootstrap, holm, item_task, spread, stratified_paired_test, task_mean_and_stderr, welch_test

MATH_SIZES = {"aime24": 30, "aime25": 30, "amc": 83, "math500": 500, "minerva": 272, "olympiadbench": 675}
"""The real math benchmarks' sizes: AIME is 3.8% of the items and a third of the score."""


def item_ids(sizes: dict[str, int]) -> list[str]:
    return [f"math/{task}/{i}" for task, n in sizes.items() for i in range(n)]


def domain_score(scores: dict[str, float]) -> float:
    by_task: dict[str, list[float]] = {}
    for i, v in scores.items():
        by_task.setdefault(item_task(i), []).append(v)
    return task_mean_and_stderr(by_task)[0]


def test_seed_statistics_by_hand():
    s = spread([0.30, 0.40])
    # mean 0.35, sd 0.0707; t(0.975, 1) = 12.706: half width 12.706 * 0.0707 / sqrt(2) = 0.6353
    assert s["mean"] == pytest.approx(0.35) and s["sd"] == pytest.approx(0.070711, abs=1e-6)
    assert s["ci95"] == pytest.approx([0.35 - 0.63531, 0.35 + 0.63531], abs=1e-4)
    assert spread([0.3])["ci95"] is None
    w = welch_test([0.30, 0.32, 0.34], [0.40, 0.44, 0.48])
    # diff 0.12; se = sqrt(0.0004/3 + 0.0016/3) = 0.02582; t = 4.648; df = 2.94 -> p = 0.0196
    assert w["mean_diff"] == pytest.approx(0.12) and w["t"] == pytest.approx(4.648, abs=1e-3)
    assert w["df"] == pytest.approx(2.941, abs=1e-2) and w["p_value"] == pytest.approx(0.0196, abs=2e-3)
    assert welch_test([0.3], [0.4, 0.5])["p_value"] is None


def test_one_benchmark_is_the_plain_paired_t_test_by_hand():
    a = {"m/t/0": 0.0, "m/t/1": 0.5, "m/t/2": 0.5, "m/t/3": 0.25}
    b = {"m/t/0": 0.5, "m/t/1": 0.5, "m/t/2": 1.0, "m/t/3": 0.5}
    r = stratified_paired_test(a, b)
    assert r["n_items"] == 4 and r["mean_diff"] == pytest.approx(0.3125)
    # diffs 0.5, 0, 0.5, 0.25: sd = 0.2394, t = 0.3125 / (0.2394 / 2) = 2.611, df 3 -> p = 0.0796
    assert r["t"] == pytest.approx(2.611, abs=1e-3) and r["df"] == pytest.approx(3.0)
    assert r["p_value"] == pytest.approx(0.0796, abs=1e-3)


def test_paired_difference_is_the_difference_of_the_reported_domain_scores():
    """An arm up to 20 points better on the two AIME sets alone moves the domain score (2 of its 6
    benchmarks) by about +6 points; the paired test must say that, not the under +1 that an
    unweighted mean over the 1,590 items gives."""
    rng = random.Random(0)
    ids = item_ids(MATH_SIZES)
    a = {i: rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for i in ids}
    b = {i: min(1.0, v + 0.2) if item_task(i).startswith("aime") else v for i, v in a.items()}
    r = stratified_paired_test(a, b)
    assert r["mean_diff"] == pytest.approx(domain_score(b) - domain_score(a), abs=1e-12)
    assert r["ci95"][0] < r["mean_diff"] < r["ci95"][1]
    unweighted = sum(b[i] - a[i] for i in ids) / len(ids)
    assert r["mean_diff"] > 5 * unweighted  # what the old test reported instead
    h = hierarchical_bootstrap({0: a}, {0: b})
    assert h["mean_diff"] == pytest.approx(domain_score(b) - domain_score(a), abs=1e-12)


def test_bootstrap_holds_seed_noise_that_the_item_test_does_not_see():
    """Two seeds: B is +10 points in one and -2 in the other. Given these runs the items say +4 with
    a narrow interval; over seeds and items the interval must reach both seeds' values."""
    rng = random.Random(1)
    ids = item_ids({"x": 200, "y": 100})
    a = {s: {i: rng.random() * 0.5 for i in ids} for s in (0, 1)}
    b = {0: {i: v + 0.10 for i, v in a[0].items()}, 1: {i: v - 0.02 for i, v in a[1].items()}}
    mean_items = {arm: {i: (d[0][i] + d[1][i]) / 2 for i in ids} for arm, d in (("a", a), ("b", b))}
    given_runs = stratified_paired_test(mean_items["a"], mean_items["b"])
    h = hierarchical_bootstrap(a, b)
    assert h["mean_diff"] == pytest.approx(0.04) and given_runs["mean_diff"] == pytest.approx(0.04)
    assert given_runs["ci95"][0] > 0  # conditional on the runs: "significant"
    assert h["ci95"][0] <= -0.019 and h["ci95"][1] >= 0.099  # both seeds' differences are inside
    assert h["p_value"] > 0.05
    assert hierarchical_bootstrap(a, b) == h  # deterministic


def test_bootstrap_p_value_is_small_for_a_clear_difference_and_large_for_none():
    rng = random.Random(2)
    ids = item_ids({"x": 100, "y": 40})
    a = {s: {i: rng.random() for i in ids} for s in range(3)}
    same = hierarchical_bootstrap(a, a)
    assert same["mean_diff"] == 0 and same["p_value"] == 1.0
    better = {s: {i: v + 0.3 + 0.01 * s for i, v in d.items()} for s, d in a.items()}
    clear = hierarchical_bootstrap(a, better)
    assert clear["p_value"] < 0.001 and clear["ci95"][0] > 0.29


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    assert holm({"a": 0.5, "b": None}) == {"a": 0.5, "b": None}


# --------------------------------------------------------------------------------------------
# a hand-made comparison folder


def suite_json(scores: dict[str, float]) -> dict:
    by_task: dict[str, list[float]] = {}
    for i, v in scores.items():
        by_task.setdefault(item_task(i), []).append(v)
    mean, se = task_mean_and_stderr(by_task)
    return {"pass_at_1": mean, "k": 4, "n_items": len(scores), "mean_output_tokens": 10.0, "stderr": se,
            "ci95": [mean - 1.96 * se, mean + 1.96 * se], "item_scores": scores}


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def make_comparison(out, spends: dict[str, list[float]], seeds=(0, 1), budget=100.0):
    """Arms `a` and `b`: metrics rows with the given cumulative samples, evals at every step."""
    rng = random.Random(3)
    ids = item_ids({"aime24": 30, "math500": 300})
    write(out / "config.json", {
        "profile": "hand", "arms": ["a", "b"], "seeds": list(seeds), "n_seeds": len(seeds), "spend_rule": SPEND_RULE,
        "budget": {"kind": "samples", "amount": budget, "eval_points": [0.5, 1.0]},
        "base": {"checkpoint": "base", "rl_steps": 10, "early_rl_step": None}, "suites": ["math"],
        "configs": {arm: {"train": {"n": 16}} for arm in ("a", "b")}, "provenance": {},
    })
    base = {i: rng.random() for i in ids}
    write(out / "evals" / "baseline-rl10.json", {"method": "baseline", "step": 10, "rl_step": 10,
                                                  "suites": {"math": suite_json(base)}})
    for arm, cumulative in spends.items():
        for seed in seeds:
            rows = [{"step": k + 1, "samples_generated": c, "wall_s": 10.0 * (k + 1), "gen_s": 1.0,
                     "ds_pass_rate": 0.5} for k, c in enumerate(cumulative)]
            run = out / "arms" / arm / f"seed{seed}"
            run.mkdir(parents=True, exist_ok=True)
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            write(run / "config.json", {"arm": {"trainer": arm, "n": 16, "prompts_per_step": 4, "learning_rate": 1e-4}})
            for step in range(0, len(cumulative) + 1):
                # arm b gains on AIME only, more with every step: the evaluated step is visible in the score
                scores = {i: min(1.0, v + (0.02 * step if arm == "b" and "aime" in i else 0.0)) for i, v in base.items()}
                write(out / "evals" / f"{arm}-seed{seed}-step_{step:06d}.json",
                      {"method": arm, "seed": seed, "step": step, "suites": {"math": suite_json(scores)}})
    return out


def test_no_evaluated_checkpoint_spends_more_than_its_budget_point(tmp_path):
    """Arm a spends 20 per step, arm b 35 (the long-step arm): at 50 and 100, the evaluated steps
    are the last at or under them (a: 2 and 5; b: 1 and 2), never the ones that passed them."""
    out = make_comparison(tmp_path / "run", {"a": [20, 40, 60, 80, 100], "b": [35, 70, 105]})
    summary = build_summary(out)
    arm_rows = [r for r in summary["rows"] if r["method"] != "baseline"]
    assert arm_rows
    for r in arm_rows:
        assert max(r["spent_per_seed"]) <= r["budget_point"], r
    steps = {(r["method"], r["eval_points"][0]): r["steps_per_seed"][0] for r in arm_rows}
    assert steps == {("a", 0.5): 2, ("a", 1.0): 5, ("b", 0.5): 1, ("b", 1.0): 2}


def test_an_arm_whose_first_step_passes_a_point_is_the_base_there(tmp_path):
    out = make_comparison(tmp_path / "run", {"a": [20, 40, 60, 80, 100], "b": [70, 100]})
    rows = {(r["method"], r["eval_points"][0]): r for r in build_summary(out)["rows"] if r["method"] != "baseline"}
    assert rows["b", 0.5]["steps_per_seed"] == [0, 0] and rows["b", 0.5]["spent"] == 0
    assert rows["b", 1.0]["steps_per_seed"] == [2, 2] and rows["b", 1.0]["spent"] == 100


def test_summary_and_tables_carry_the_headline_test_and_the_spend(tmp_path):
    out = make_comparison(tmp_path / "run", {"a": [20, 40, 60, 80, 100], "b": [35, 70, 105]})
    summary = render(out)
    sig = summary["significance"]["math"]
    final = {r["method"]: r for r in summary["rows"] if r["method"] != "baseline" and 1.0 in r["eval_points"]}
    reported = final["b"]["scores"]["math"] - final["a"]["scores"]["math"]
    for test in ("headline", "paired_items", "welch_seeds"):
        assert sig[test]["mean_diff"] == pytest.approx(reported, abs=1e-12), test
    assert sig["headline"]["p_holm"] is not None and sig["headline"]["n_seeds"] == 2
    tables = (out / "tables.md").read_text()
    assert "bootstrap over seeds and items" in tables and "Holm p" in tables
    assert "spent (samples)" in tables and "50% = 50" in tables
    assert json.loads((out / "summary.json").read_text())["significance"]["math"]["headline"] == sig["headline"]


def test_a_folder_from_before_matched_spend_is_refused_in_one_line(tmp_path):
    out = make_comparison(tmp_path / "run", {"a": [20, 40, 60, 80, 100], "b": [35, 70, 105]})
    meta = json.loads((out / "config.json").read_text())
    del meta["spend_rule"]
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ReportError, match="older harness"):
        build_summary(out)


def test_a_budget_point_in_steps_is_not_rounded_down():
    from harness.runs import Budget, point_steps

    rows = [{"step": i} for i in range(1, 101)]
    assert point_steps(rows, Budget("steps", 100), [0.29]) == {0.29: 29, 1.0: 100}  # 0.29 * 100 = 28.999...
