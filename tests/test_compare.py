"""`harness compare`, `harness report` and `harness regress` on the smoke profile."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from harness.compare import resolve_arm
from harness.config import ConfigError
from harness.regress import diff, measurements
from harness.report import paired_test
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def comparison(smoke_base, tmp_path_factory):
    _, cache = smoke_base
    out = tmp_path_factory.mktemp("compare") / "run"
    done = run_cli(["compare", "prorl", "brorl", "--profile", "smoke", "--out", str(out), "--quiet"], cache)
    assert done.returncode == 0, done.stderr
    return out, cache, done.stdout


def test_compare_writes_every_file(comparison):
    out, _, stdout = comparison
    for name in ("summary.json", "tables.md", "figure1.png", "config.json"):
        assert (out / name).is_file(), name
    for arm in ("prorl", "brorl"):
        assert (out / "arms" / arm / "metrics.jsonl").is_file()
        assert (out / "arms" / arm / "config.json").is_file()
    assert (out / "figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "figure1.png").stat().st_size > 20_000  # a drawn plot, not an empty canvas
    assert "## Table 2" in stdout and "## Table 3" in stdout and "## Table 4" in stdout


def test_summary_follows_the_documented_shape(comparison):
    out, _, _ = comparison
    summary = json.loads((out / "summary.json").read_text())
    assert summary["profile"] == "smoke"
    assert summary["budget"]["kind"] == "samples"
    methods = [r["method"] for r in summary["rows"]]
    assert methods[0] == "baseline" and methods.count("prorl") >= 2 and methods.count("brorl") >= 2
    for row in summary["rows"]:
        assert set(row) >= {"method", "n", "step", "hours", "samples", "scores", "mean_output_tokens"}
        assert 0.0 <= row["scores"]["reasoning_gym"] <= 1.0
    assert {r["n"] for r in summary["rows"] if r["method"] == "brorl"} == {512}
    assert {r["n"] for r in summary["rows"] if r["method"] == "prorl"} == {16}
    # equal budget: both arms end having generated at least the budget, neither much more
    budget = summary["budget"]["amount"]
    for arm in ("prorl", "brorl"):
        final = max((r for r in summary["rows"] if r["method"] == arm), key=lambda r: r["step"])
        assert budget <= final["samples"] < budget + 4 * 1024
    for arm in ("prorl", "brorl"):
        assert 0 <= summary["efficiency"][arm]["ds_pass_rate"] <= 1 and summary["efficiency"][arm]["gen_samples_per_s"] > 0
    sig = summary["significance"]["reasoning_gym"]
    assert sig["test"] == "paired t-test" and sig["n_items"] == 60 and sig["p_value"] is not None
    assert set(summary["provenance"]) >= {"git_commit", "packages", "machine", "seed"}
    tables = (out / "tables.md").read_text()
    assert "62.08" in tables and "72.4" in tables  # the paper's rows beside ours


def test_report_rerenders_without_rerunning(comparison, tmp_path):
    out, cache, _ = comparison
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for name in ("summary.json", "tables.md", "figure1.png"):
        (copy / name).unlink()
    shutil.rmtree(copy / "arms" / "prorl" / "checkpoints")  # no model needed to re-render
    done = run_cli(["report", str(copy), "--quiet"], cache)
    assert done.returncode == 0, done.stderr
    assert json.loads((copy / "summary.json").read_text())["rows"] == json.loads((out / "summary.json").read_text())["rows"]
    assert (copy / "figure1.png").is_file()
    # an interrupted run (no evaluation of one arm yet) still renders, and says so
    for ev in (copy / "evals").glob("brorl-*.json"):
        ev.unlink()
    done = run_cli(["report", str(copy), "--quiet"], cache)
    assert done.returncode == 0 and "Incomplete run" in (copy / "tables.md").read_text()
    done = run_cli(["report", str(tmp_path)], cache)
    assert done.returncode == 2 and "not a comparison folder" in done.stderr


def test_bad_arms_are_rejected():
    assert resolve_arm("prorl") == ("prorl", [])
    assert resolve_arm("rollout_scaling") == ("prorl", ["train.trainer=rollout_scaling"])
    with pytest.raises(ConfigError, match="unknown arm 'grpo'"):
        resolve_arm("grpo")


def test_paired_test_by_hand():
    a = {"x": 0.0, "y": 0.5, "z": 0.5, "w": 0.25}
    b = {"x": 0.5, "y": 0.5, "z": 1.0, "w": 0.5}
    r = paired_test(a, b)
    assert r["n_items"] == 4 and r["mean_diff"] == pytest.approx(0.3125)
    # diffs 0.5, 0, 0.5, 0.25: sd = 0.2394, t = 0.3125 / (0.2394 / 2) = 2.611, df 3 -> p = 0.0796
    assert r["t"] == pytest.approx(2.611, abs=1e-3) and r["p_value"] == pytest.approx(0.0796, abs=1e-3)


def test_regress_diff_flags_moves_beyond_tolerance():
    summary = {"rows": [{"method": "baseline", "step": 0, "scores": {"rg": 0.5}, "mean_output_tokens": {"rg": 7.0}}],
               "efficiency": {"prorl": {"ds_pass_rate": 0.8, "steps": 10}}}
    baseline = {"measurements": measurements(summary), "tolerances": {"score": 0.02, "mean_output_tokens": 0.5,
                                                                      "ds_pass_rate": 0.05, "steps": 1}}
    assert diff(baseline, summary)[1]
    summary["rows"][0]["scores"]["rg"] = 0.45
    rows, ok = diff(baseline, summary)
    assert not ok and [r["quantity"] for r in rows if not r["ok"]] == ["score baseline@0 rg"]


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

        def broken_objective(logp, old_logp, advantages, eps_low, eps_high):  # sign error: unlearns
            loss, clipped = ppo_clip_objective(logp, old_logp, advantages, eps_low, eps_high)
            return -loss, clipped

        grpo.ppo_clip_objective = broken_objective
    """,
}


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_regress_fails_on_a_deliberately_broken_scorer_or_loss(smoke_base, what):
    _, cache = smoke_base
    script = textwrap.dedent(BROKEN[what]) + textwrap.dedent("""
        import sys
        from harness.cli import main
        sys.exit(main(["regress", "--profile", "smoke", "--quiet"]))
    """)
    env = {**os.environ, "HARNESS_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REGRESSION" in done.stdout
