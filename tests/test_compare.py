"""`harness compare`, `harness report` and `harness regress` on the smoke profile."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from harness.config import ConfigError
from harness.jobs.compare import resolve_arm
from harness.regress import diff, measurements
from harness.runs import TIMING_KEYS, Budget, eval_points, point_steps, read_metrics
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


SEEDS = 2
BUDGET = 1024
"""The shared smoke comparison: two seeds per arm at half the smoke profile's samples budget, and 8
samples per eval item instead of 16 (CI time: it trains 4 runs and evaluates 8-10 checkpoints)."""


@pytest.fixture(scope="module")
def comparison(smoke_base, tmp_path_factory):
    _, cache = smoke_base
    out = tmp_path_factory.mktemp("compare") / "run"
    done = run_cli(["compare", "prorl", "brorl", "--profile", "smoke", "--seeds", str(SEEDS), "--out", str(out), "--quiet",
                    f"compare.budget={BUDGET}", "eval.k=8"], cache)
    assert done.returncode == 0, done.stderr
    return out, cache, done.stdout


def test_compare_writes_every_file_in_the_seeded_layout(comparison):
    out, _, stdout = comparison
    for name in ("summary.json", "tables.md", "figure1.png", "config.json", "bootstrap.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["seeds"] == [0, 1] and config["n_seeds"] == SEEDS
    for arm in ("prorl", "brorl"):
        assert sorted(p.name for p in (out / "arms" / arm).iterdir()) == ["seed0", "seed1"]
        for seed in range(SEEDS):
            run = out / "arms" / arm / f"seed{seed}"
            assert (run / "metrics.jsonl").is_file()
            assert json.loads((run / "config.json").read_text())["config"]["train"]["seed"] == seed
            evals = sorted((out / "evals").glob(f"{arm}-seed{seed}-step_*.json"))
            # each evaluated checkpoint exists; a point whose first step passed it is the base's (the
            # baseline row), never evaluated under the arm's name: smoke's brorl may have no other
            assert all((run / "checkpoints" / p.stem.split("-")[-1]).is_dir() for p in evals)
            assert not any(p.stem.endswith("step_000000") for p in evals)
            assert evals or arm == "brorl"
    # the two seeds of an arm really differ (their own RL randomness), from the same base
    untimed = [[{k: v for k, v in row.items() if k not in TIMING_KEYS}
                for row in read_metrics(out / "arms" / "prorl" / f"seed{seed}" / "metrics.jsonl")] for seed in range(SEEDS)]
    assert untimed[0] != untimed[1]
    baselines = sorted(p.name for p in (out / "evals").glob("baseline-*.json"))
    base = config["base"]
    expected = {f"baseline-rl{base['rl_steps']}.json"} | (
        {f"baseline-rl{base['early_rl_step']}.json"} if base["early_checkpoint"] else set())
    assert set(baselines) == expected
    assert (out / "figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "figure1.png").stat().st_size > 20_000  # a drawn plot, not an empty canvas
    assert "## Table 2" in stdout and "## Table 3" in stdout and "## Table 4" in stdout


def test_summary_rows_are_means_over_seeds_with_intervals(comparison):
    out, _, _ = comparison
    summary = json.loads((out / "summary.json").read_text())
    assert summary["profile"] == "smoke" and summary["complete"]
    assert summary["budget"]["kind"] == "samples" and summary["seeds"] == [0, 1] and summary["n_seeds"] == SEEDS
    rows = summary["rows"]
    base_rl = summary["base"]["rl_steps"]
    baselines = [r for r in rows if r["method"] == "baseline"]
    assert rows[:len(baselines)] == baselines and baselines[-1]["step"] == base_rl
    assert len(baselines) == (2 if summary["base"]["early_rl_step"] is not None else 1)
    for row in rows:
        assert set(row) >= {"method", "n", "label", "step", "step_label", "hours", "samples", "scores", "ci95", "ci_kind",
                            "mean_output_tokens"}
        for suite in ("math", "code", "reasoning_gym"):
            assert 0.0 <= row["scores"][suite] <= 1.0
    for arm, n in (("prorl", 16), ("brorl", 512)):
        arm_rows = [r for r in rows if r["method"] == arm]
        assert arm_rows and {r["n"] for r in arm_rows} == {n}
        assert sorted(f for r in arm_rows for f in r["eval_points"]) == [0.5, 1.0]
        for r in arm_rows:
            assert r["seeds"] == [0, 1] and r["ci_kind"] == "seeds"
            assert r["step_label"].startswith(f"{base_rl}+") and r["label"] == f"{arm}@{r['step_label']}"
            for suite, per_seed in r["scores_per_seed"].items():
                assert len(per_seed) == SEEDS and r["scores"][suite] == pytest.approx(sum(per_seed) / SEEDS)
                lo, hi = r["ci95"][suite]
                assert lo <= r["scores"][suite] <= hi
                if r["sd"][suite]:  # the t-interval over two seeds: mean +- 12.706 sd / sqrt(2)
                    assert hi - r["scores"][suite] == pytest.approx(12.706 * r["sd"][suite] / 2 ** 0.5, rel=1e-3)
        # matched spend: no evaluated checkpoint of either arm generated more than its budget point
        for r in arm_rows:
            assert all(s <= r["budget_point"] for s in r["spent_per_seed"]), r
            assert r["samples_per_seed"] == r["spent_per_seed"]
        final = next(r for r in arm_rows if 1.0 in r["eval_points"])
        assert final["budget_point"] == BUDGET
        e = summary["efficiency"][arm]
        assert 0 <= e["ds_pass_rate"] <= 1 and e["gen_samples_per_s"] > 0
        assert e["seeds"] == [0, 1] and len(e["per_seed"]["ds_pass_rate"]) == SEEDS
    for suite in ("math", "code", "reasoning_gym"):
        sig = summary["significance"][suite]
        assert sig["paired_items"]["test"].startswith("paired over items") and sig["paired_items"]["p_value"] is not None
        assert sig["headline"]["n_seeds"] == SEEDS and sig["headline"]["p_value"] is not None
        assert sig["headline"]["p_holm"] >= sig["headline"]["p_value"]
        assert sig["paired_items"]["n_items"] > 0 and sig["seeds"] == {"prorl": [0, 1], "brorl": [0, 1]}
        assert sig["welch_seeds"]["test"] == "Welch t-test" and sig["welch_seeds"]["n"] == [SEEDS, SEEDS]
        assert sig["welch_seeds"]["p_value"] is not None
    assert set(summary["provenance"]) >= {"git_commit", "packages", "machine", "seed"}
    assert summary["arm_settings"]["brorl"]["lr_rule"].startswith("sqrt")
    tables = (out / "tables.md").read_text()
    assert "62.08" in tables and "72.4" in tables  # the paper's rows beside ours
    assert "K=2 runs per arm" in tables and "learning-rate rule: sqrt" in tables and "1024 samples" in tables
    assert "Welch" in tables and f"| {base_rl}+" in tables
    assert "bootstrap over seeds and items" in tables and "spent (samples)" in tables


def test_report_rerenders_identically_from_files(comparison, tmp_path):
    out, cache, _ = comparison
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for name in ("summary.json", "tables.md", "figure1.png"):
        (copy / name).unlink()
    for checkpoints in (copy / "arms").glob("*/seed*/checkpoints"):
        shutil.rmtree(checkpoints)  # no model needed to re-render
    done = run_cli(["report", str(copy), "--quiet"], cache)
    assert done.returncode == 0, done.stderr
    assert (copy / "summary.json").read_text() == (out / "summary.json").read_text()
    assert (copy / "tables.md").read_text() == (out / "tables.md").read_text()
    assert (copy / "figure1.png").is_file()
    # an interrupted run (no evaluation of one seed of one arm yet) still renders, and says so
    evals = list((copy / "evals").glob("prorl-seed1-*.json"))
    assert evals
    for ev in evals:
        ev.unlink()
    done = run_cli(["report", str(copy), "--quiet"], cache)
    assert done.returncode == 0, done.stderr
    assert "Incomplete run" in (copy / "tables.md").read_text()
    summary = json.loads((copy / "summary.json").read_text())
    assert {tuple(r["seeds"]) for r in summary["rows"] if r["method"] == "prorl"} == {(0,)}
    assert all(r["ci_kind"] == "items" for r in summary["rows"] if r["method"] == "prorl")
    assert summary["significance"]["reasoning_gym"]["welch_seeds"] is None
    done = run_cli(["report", str(tmp_path)], cache)
    assert done.returncode == 2 and "not a comparison folder" in done.stderr


def test_resume_keeps_finished_work_and_refuses_another_k_or_config(comparison):
    out, cache, _ = comparison
    done = run_cli(["compare", "prorl", "brorl", "--profile", "smoke", "--seeds", "3", "--out", str(out), "--resume",
                    f"compare.budget={BUDGET}", "eval.k=8"], cache)
    assert done.returncode == 2 and "--seeds 3" in done.stderr and "--seeds 2" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_cli(["compare", "prorl", "brorl", "--profile", "smoke", "--out", str(out), "--resume", "eval.k=8"], cache)
    assert done.returncode == 2 and "the budget (compare.budget" in done.stderr  # the budget defines it too
    done = run_cli(["compare", "prorl", "brorl", "--profile", "smoke", "--out", str(out), "--resume",
                    f"compare.budget={BUDGET}", "eval.k=8", "train.learning_rate=0.001"], cache)
    assert done.returncode == 2 and "changed (train.learning_rate)" in done.stderr
    evals = {p.name: p.stat().st_mtime_ns for p in (out / "evals").glob("*.json")}
    redo = max((out / "evals").glob("prorl-seed1-*.json"))  # as if interrupted before its last evaluation
    redo.unlink()
    done = run_cli(["compare", "prorl", "brorl", "--profile", "smoke", "--out", str(out), "--resume", "--quiet",
                    f"compare.budget={BUDGET}", "eval.k=8"], cache)  # K from config.json
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("evaluating") == 1 and f"evaluating {redo.stem}" in done.stderr
    assert done.stderr.count("budget already spent") == 2 * SEEDS and "training prorl" not in done.stderr
    now = {p.name: p.stat().st_mtime_ns for p in (out / "evals").glob("*.json")}
    assert set(now) == set(evals) and all(now[k] == v for k, v in evals.items() if k != redo.name)
    assert json.loads((out / "summary.json").read_text())["complete"]


def test_bad_arms_are_rejected():
    assert resolve_arm("prorl") == ("prorl", [])
    assert resolve_arm("rollout_scaling") == ("prorl", ["train.trainer=rollout_scaling"])
    with pytest.raises(ConfigError, match="unknown arm 'grpo'"):
        resolve_arm("grpo")


def test_eval_points_map_to_the_last_step_at_or_under_them():
    rows = [{"step": i, "samples_generated": 600 * i} for i in range(1, 5)]
    assert point_steps(rows, Budget("samples", 2048), [0.5]) == {0.5: 1, 1.0: 3}
    assert point_steps(rows[:2], Budget("samples", 2048), [0.25, 0.5]) == {0.25: 0, 0.5: 1, 1.0: None}
    assert point_steps(rows, Budget("samples", 1200), [0.5]) == {0.5: 1, 1.0: 2}  # spend equal to the point
    assert eval_points([1.0, 0.5, 0.5]) == [0.5, 1.0]


def test_regress_diff_flags_moves_beyond_tolerance():
    summary = {"rows": [{"method": "baseline", "label": "baseline@6", "step": 6, "scores": {"rg": 0.5},
                         "mean_output_tokens": {"rg": 7.0}},
                        {"method": "prorl", "label": "prorl@6+13", "step": 13, "scores": {"rg": 0.55},
                         "mean_output_tokens": {"rg": 7.1}}],
               "efficiency": {"prorl": {"ds_pass_rate": 0.8, "steps": 10}}}
    assert set(measurements(summary)) == {"score baseline@6 rg", "mean_output_tokens baseline@6 rg", "score prorl@6+13 rg",
                                          "mean_output_tokens prorl@6+13 rg", "ds_pass_rate prorl", "steps prorl"}
    baseline = {"measurements": measurements(summary), "tolerances": {"score": 0.02, "mean_output_tokens": 0.5,
                                                                      "ds_pass_rate": 0.05, "steps": 1}}
    assert diff(baseline, summary)[1]
    summary["rows"][0]["scores"]["rg"] = 0.45
    rows, ok = diff(baseline, summary)
    assert not ok and [r["quantity"] for r in rows if not r["ok"]] == ["score baseline@6 rg"]
    # --fail-fast, mid-run: only rows evaluated so far count; a running arm's pass rate and steps do not
    summary["rows"][0]["scores"]["rg"] = 0.5
    summary["rows"].pop()
    summary["efficiency"]["prorl"] = {"ds_pass_rate": 0.3, "steps": 4}
    assert not diff(baseline, summary)[1]
    rows, ok = diff(baseline, summary, partial=True)
    assert ok and {r["quantity"] for r in rows} == {"score baseline@6 rg", "mean_output_tokens baseline@6 rg"}
    summary["rows"][0]["mean_output_tokens"]["rg"] = 9.0
    assert not diff(baseline, summary, partial=True)[1]


BROKEN = {
    "scorer": """
        from suites.base import ScoreResult
        import suites.reasoning_gym as rg

        def broken_score(response, entry):  # ignores the answer: every response is wrong
            return ScoreResult(0.0, "wrong")

        rg.ReasoningGymSuite.scorer = staticmethod(broken_score)
    """,
    "loss": """
        import trainers.grpo as grpo
        from trainers.core import ppo_clip_objective

        def broken_objective(*args, **kwargs):  # sign error: unlearns
            loss, clipped = ppo_clip_objective(*args, **kwargs)
            return -loss, clipped

        grpo.ppo_clip_objective = broken_objective
    """,
}


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_regress_fails_on_a_deliberately_broken_scorer_or_loss(guard_base, what):
    _, cache = guard_base
    script = textwrap.dedent(BROKEN[what]) + textwrap.dedent("""
        import sys
        from harness.cli import main
        sys.exit(main(["regress", "--profile", "smoke", "--quiet", "--fail-fast"]))
    """)
    env = {**os.environ, "HARNESS_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REGRESSION" in done.stdout and "stopped early" in done.stdout
    # the guard's base came from the cache (built by the unmodified code), never from the broken run
    assert "reusing cached base checkpoint" in done.stderr, done.stderr
