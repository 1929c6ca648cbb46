"""`harness sweep`: one recipe at several N with the same samples per step; its checks, its table
and figure from a synthetic folder, and (slow) the whole path on the smoke profile."""

import json

import pytest

from harness.config import ConfigError
from harness.jobs.sweep import DEFAULT_NS, run_sweep, samples_per_step, sweep_configs
from harness.report.sweep import build_sweep, render_sweep, render_sweep_figure, render_sweep_table
from harness.runs import SPEND_RULE, folder_kind, sweep_base_eval_path, sweep_eval_path, sweep_run_dir
from tests.conftest import run_cli
from tests.test_stats import item_ids, suite_json
from trainers import rollout_scaling


def test_each_n_gets_the_same_samples_per_step_and_learning_rate_with_the_probe_on():
    configs = sweep_configs("smoke", list(DEFAULT_NS), [])
    total = samples_per_step(configs[4])
    assert total == 512 * (8 // 4)  # the smoke profile's rollout-scaling arm: 512 x 2 prompts
    arms = {n: rollout_scaling.settings(cfg.train) for n, cfg in configs.items()}
    assert {n: (a.n, a.prompts_per_step) for n, a in arms.items()} == {n: (n, total // n) for n in DEFAULT_NS}
    assert len({a.learning_rate for a in arms.values()}) == 1
    assert all(cfg.train.probe_every == 1 and cfg.train.trainer == "rollout_scaling" for cfg in configs.values())
    seeded = sweep_configs("smoke", [16], ["train.rollout_scaling.samples_per_step=256"], seed=3)[16]
    assert seeded.train.seed == 3 and rollout_scaling.settings(seeded.train).prompts_per_step == 16


@pytest.mark.parametrize("ns, overrides, fragment", [
    ([4, 48], [], "N=48 does not divide the 1024 samples per step"),
    ([2048], [], "N=2048 does not divide"),
    ([16, 16], [], "N=16 is given twice"),
    ([1, 4], [], "N must be >= 2"),
    ([], [], "no N given"),
    ([8], ["train.rollout_scaling.samples_per_step=100"], "N=8 does not divide the 100 samples per step"),
    ([16], ["train.trainer=step_scaling"], "'train.trainer' with `harness sweep`"),
])
def test_bad_arguments_are_refused_in_one_line(ns, overrides, fragment):
    with pytest.raises(ConfigError) as info:
        sweep_configs("smoke", ns, overrides)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_the_command_refuses_bad_input_before_writing_anything(tmp_path):
    out = tmp_path / "sweep"
    done = run_cli(["sweep", "--profile", "smoke", "--n", "4,48", "--out", str(out)], tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "N=48 does not divide" in done.stderr
    done = run_cli(["sweep", "--profile", "smoke", "--n", "4,x", "--out", str(out)], tmp_path)
    assert done.returncode == 2 and "invalid value for --n" in done.stderr
    done = run_cli(["sweep", "--profile", "smoke", "--seeds", "0", "--out", str(out)], tmp_path)
    assert done.returncode == 2 and "--seeds" in done.stderr
    assert not out.exists() and not (tmp_path / "bootstrap").exists()  # no base built, nothing written
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="a sweep starts in a new or empty folder"):
        run_sweep("smoke", [4, 16], busy, [], progress=False, log=lambda _: None)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def make_sweep(out, ns=(4, 16, 512), seeds=(0, 1)):
    """A synthetic sweep folder: pass rate and rate rise with N, the probe falls less often, scores
    rise with N; the N=4 runs are evaluated at the base (step 0)."""
    _write(out / "config.json", {
        "profile": "hand", "recipe": "brorl", "ns": list(ns), "seeds": list(seeds), "samples_per_step": 1024,
        "budget": {"kind": "samples", "amount": 2048}, "suites": ["math"], "base_checkpoint": "base",
        "configs": {}, "provenance": {"git_commit": "abc"},
    })
    ids = item_ids({"aime24": 10, "math500": 30})
    for i, n in enumerate(ns):
        for seed in seeds:
            run = sweep_run_dir(out, n, seed)
            rows = [{"step": k + 1, "samples_generated": 1024 * (k + 1), "gen_s": 10.0 / (i + 1), "ds_pass_rate": 0.2 * (i + 1) + 0.01 * seed,
                     "probe_q_pos": 0.05, "probe_delta_q_pos": (-1e-3 if k < 2 - i else 1e-3), "probe_fell": 0.5,
                     "probe_logp_delta": -0.1 if k < 2 - i else 0.1, "probe_s": 0.1} for k in range(2)]
            run.mkdir(parents=True, exist_ok=True)
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            _write(run / "config.json", {"recipe": f"brorl-n{n}", "arm": {"trainer": "rollout_scaling", "n": n,
                                                                           "prompts_per_step": 1024 // n, "learning_rate": 2e-4}})
            scores = {item: min(1.0, 0.1 * (i + 1) + 0.02 * seed + 0.01 * (j % 3)) for j, item in enumerate(ids)}
            if n == 4:  # the first step passed the budget: the base's row stands for this run
                _write(sweep_eval_path(out, n, seed), {"checkpoint": "base", "n": n, "seed": seed, "step": 0, "base_stands": True})
            else:
                _write(sweep_eval_path(out, n, seed), {"checkpoint": f"{run}/checkpoints/step_000002", "n": n, "seed": seed,
                                                       "step": 2, "suites": {"math": suite_json(scores)}})
    base_scores = {item: 0.05 + 0.01 * (j % 3) for j, item in enumerate(ids)}
    _write(sweep_base_eval_path(out), {"checkpoint": "base", "method": "baseline", "step": 0,
                                       "suites": {"math": suite_json(base_scores)}})
    return out


def test_sweep_json_table_and_figure_from_a_synthetic_folder(tmp_path):
    out = make_sweep(tmp_path / "sweep")
    assert folder_kind(out) == "sweep"
    sweep = build_sweep(out)
    assert [p["n"] for p in sweep["points"]] == [4, 16, 512] and sweep["complete"] and sweep["n_seeds"] == 2
    small, _, large = sweep["points"]
    assert small["prompts_per_step"] == 256 and large["prompts_per_step"] == 2
    assert small["ds_pass_rate"]["per_seed"] == pytest.approx([0.2, 0.21]) and small["ds_pass_rate"]["ci95"] is not None
    assert small["gen_samples_per_s"]["mean"] == pytest.approx(2048 / 20.0)
    assert small["probe_fall_rate"]["mean"] == 1.0 and large["probe_fall_rate"]["mean"] == 0.0
    assert small["eval_steps"] == [0, 0] and large["ci_kind"] == "seeds"
    assert small["scores"] == {} and 0.05 < sweep["base"]["scores"]["math"] < 0.07  # the base under its own name only
    assert large["scores"]["math"] > sweep["base"]["scores"]["math"]
    lo, hi = large["ci95"]["math"]
    assert lo < large["scores"]["math"] < hi  # the t-interval over the two seeds

    table = render_sweep_table(sweep)
    assert "| N | prompts/step | RL steps | dynamic-sampling pass rate (%) | generation samples/s | ΔQ_pos fall rate (%) | math pass@1 (%) |" in table
    assert "| base | — | 0 | — | — | — | 6.0 [5.6, 6.3] |" in table
    assert "| 4 | 256 | 2 (evaluated: 0) | 20 [" in table and "| the base (no step within budget) |" in table
    assert "| 512 | 2 | 2 | 61 [" in table
    assert "K=2 runs per N" in table and "Incomplete" not in table
    png = render_sweep_figure(sweep)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000

    # one seed's evaluation missing: an incomplete sweep still renders, that N's interval is over items
    sweep_eval_path(out, 16, 1).unlink()
    render_sweep(out)
    again = json.loads((out / "sweep.json").read_text())
    assert not again["complete"] and again["points"][1]["ci_kind"] == "items" and again["points"][1]["eval_seeds"] == [0]
    assert "Incomplete sweep" in (out / "sweep.md").read_text() and (out / "sweep.png").is_file()


def test_a_comparison_folder_is_not_a_sweep(tmp_path):
    from harness.report import ReportError

    _write(tmp_path / "cmp" / "config.json", {"arms": ["a", "b"], "seeds": [0], "budget": {}, "suites": [], "spend_rule": SPEND_RULE})
    with pytest.raises(ReportError, match="not a sweep folder .*`harness compare` folder"):
        build_sweep(tmp_path / "cmp")


@pytest.mark.slow
def test_smoke_sweep_writes_its_table_and_figure(smoke_base, tmp_path):
    """The whole path at small settings: N = 4 and 16 at 256 samples per step, 1,024 samples of
    budget, 4 samples per eval item (about a minute and a half on 2 cores)."""
    _, cache = smoke_base
    out = tmp_path / "sweep"
    done = run_cli(["sweep", "--profile", "smoke", "--n", "4,16", "--out", str(out), "--quiet",
                    "train.rollout_scaling.samples_per_step=256", "compare.budget=1024", "eval.k=4"], cache)
    assert done.returncode == 0, done.stderr
    for name in ("sweep.json", "sweep.md", "sweep.png", "config.json"):
        assert (out / name).is_file(), name
    sweep = json.loads((out / "sweep.json").read_text())
    assert [p["n"] for p in sweep["points"]] == [4, 16] and sweep["complete"] and sweep["samples_per_step"] == 256
    for p in sweep["points"]:
        arm = json.loads((sweep_run_dir(out, p["n"], 0) / "config.json").read_text())["arm"]
        assert (arm["n"], arm["prompts_per_step"]) == (p["n"], 256 // p["n"])
        assert 0 <= p["ds_pass_rate"]["mean"] <= 1 and p["gen_samples_per_s"]["mean"] > 0
        assert p["probe"]["probed_updates"] >= 1 and 0 <= p["probe_fall_rate"]["mean"] <= 1
        assert set(p["scores"]) == {"math", "code", "reasoning_gym"} and all(len(ci) == 2 for ci in p["ci95"].values())
    table = (out / "sweep.md").read_text()
    assert "ΔQ_pos fall rate" in table and "| 4 | 64 |" in table and "| 16 | 16 |" in table
    assert table in done.stdout and (out / "sweep.png").stat().st_size > 20_000
