"""The verl backend's own parts, without verl (`tox -e py`): what the recipe compiles to, the dry
run's files and its bad input, and verl's metrics read back as the harness's rows.
tests/test_verl.py checks the same outputs against verl itself (`tox -e verl`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends.verl.compile import compile_arm
from harness.backends.verl.metrics import harness_rows, read_verl_log
from harness.config import ConfigError, load_config

from .conftest import run_cli

VERL_LOG = Path(__file__).parent / "data" / "verl_file_logger.jsonl"


def job(recipe: str, profile: str = "prorlv2-1.5b", nodes: int = 8, gpus: int = 8, overrides=()):
    cfg = load_config(profile, list(overrides), recipe=recipe)
    return compile_arm(cfg, recipe, model="M", train_file=Path("/d/train.parquet"), val_file=Path("/d/val.parquet"),
                       reward_module=Path("/h/reward.py"), checkpoints=Path("/c"), nodes=nodes, gpus_per_node=gpus,
                       experiment="x")


def values(j) -> dict[str, str]:
    return dict(o.split("=", 1) for o in j.overrides)


@pytest.mark.parametrize("recipe, n, prompts, mini, lr", [("prorl", 16, 512, 128, 1e-6), ("brorl", 512, 128, 32, 2**1.5 * 1e-6)])
def test_paper_recipes_compile_to_the_paper_batch(recipe, n, prompts, mini, lr):
    v = values(job(recipe))
    assert int(v["actor_rollout_ref.rollout.n"]) == n and int(v["data.train_batch_size"]) == prompts
    assert int(v["actor_rollout_ref.actor.ppo_mini_batch_size"]) == mini  # 4 mini-batches for both arms
    assert float(v["actor_rollout_ref.actor.optim.lr"]) == pytest.approx(lr)
    assert v["actor_rollout_ref.actor.clip_ratio_low"] == "0.2" and v["actor_rollout_ref.actor.clip_ratio_high"] == "0.27"
    assert v["actor_rollout_ref.actor.kl_loss_type"] == "mse" and float(v["actor_rollout_ref.actor.kl_loss_coef"]) == 1e-4
    assert v["algorithm.adv_estimator"] == "reinforce_plus_plus_baseline"
    assert v["algorithm.rollout_correction.rollout_is"] == "token"
    assert v["algorithm.rollout_correction.rollout_is_threshold"] == "'0.5_5.0'"
    assert v["algorithm.filter_groups.enable"] == "true" and v["actor_rollout_ref.rollout.enable_prefix_caching"] == "true"
    assert v["data.max_response_length"] == "16384" and v["actor_rollout_ref.actor.use_dynamic_bsz"] == "true"
    assert (v["trainer.nnodes"], v["trainer.n_gpus_per_node"]) == ("8", "8")
    keys = [o.split("=", 1)[0] for o in job(recipe).overrides]
    assert len(keys) == len(set(keys)), "an override given twice"


def test_what_verl_cannot_express_is_listed():
    j = job("brorl")
    text = " ".join(j.not_expressed)
    assert "ref_reset_every=200" in text and "budget_kind=wall_s" in text
    off = job("prorl", overrides=["train.tis=false", "train.clip_ratio_c=null"])
    assert values(off)["algorithm.rollout_correction.rollout_is"] == "null"
    assert values(off)["actor_rollout_ref.actor.clip_ratio_c"] == "1000000000.0"


def test_mini_batches_that_do_not_divide_the_prompts_are_refused():
    with pytest.raises(ConfigError, match="train.mini_batches"):
        job("brorl", overrides=["train.mini_batches=3"])


def test_verl_log_becomes_harness_rows():
    """The recorded file in verl's file-logger format (keys as verl 0.9.1 logs them)."""
    records = read_verl_log(VERL_LOG)
    rows = harness_rows(records, n=4, prompts_per_step=2)
    assert [r["step"] for r in rows] == [1, 2, 3]
    first = rows[0]
    assert first["ds_pass_rate"] == pytest.approx(8 / (8 + 4))  # 8 kept, 4 evicted
    assert first["gen_samples_per_s"] == pytest.approx(12 / 2.0)
    assert first["samples_generated"] == 12 and rows[-1]["wall_s"] == pytest.approx(3.0 + 3.5 + 2.5)
    assert rows[1]["ds_pass_rate"] == pytest.approx((8 + 2) / (8 + 2 + 0))  # surplus groups passed too
    assert first["reward_mean"] == 0.5 and first["kl"] == 0.001


def test_a_malformed_verl_log_line_is_one_clear_error(tmp_path):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"step": 1, "data": {}}\nnot json\n')
    with pytest.raises(ConfigError, match="line 2"):
        read_verl_log(bad)


def test_dry_run_bad_input_is_one_line(tmp_path):
    out = tmp_path / "run"
    done = run_cli(["train", "brorl", "--backend", "verl", "--profile", "smoke", "--nodes", "0", "--dry-run",
                    "--out", str(out)], tmp_path / "cache")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "--nodes" in done.stderr
    assert not out.exists()


@pytest.mark.slow
def test_dry_run_writes_command_data_and_translation(smoke_base, tmp_path):
    out = tmp_path / "run"
    done = run_cli(["train", "prorl", "--backend", "verl", "--profile", "smoke", "--gpus-per-node", "1", "--dry-run",
                    "--out", str(out)], smoke_base[1])
    assert done.returncode == 0, done.stderr
    folder = out / "verl"
    assert {p.name for p in folder.iterdir()} >= {"command.sh", "overrides.txt", "translation.md", "data"}
    assert (folder / "data" / "train.parquet").stat().st_size > 0 and "dry run: nothing ran" in done.stdout
    meta = json.loads((out / "config.json").read_text())
    assert meta["backend"] == "verl" and meta["verl"]["overrides"] == (folder / "overrides.txt").read_text().split()


@pytest.mark.slow
def test_a_comparison_made_from_verl_metrics_renders_like_a_local_one(smoke_base, tmp_path, monkeypatch):
    """`harness compare --backend verl` with verl's execution replaced by its outputs: the recorded
    file-logger file and HF checkpoints at steps 1-3 (the smoke base's weights stand in for verl's).
    Everything after verl is the real path: metrics read back, matched-spend checkpoints picked,
    evaluated in process, and the report rendered from the folder."""
    import shutil

    from harness.jobs import train_verl
    from harness.jobs.compare import run_compare
    from harness.report import render

    base, cache = smoke_base
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    ran = []

    def replay(job, out, log=print):
        ran.append(job.arm)
        folder = out / train_verl.VERL
        shutil.copy(VERL_LOG, folder / train_verl.VERL_METRICS)
        for step in (1, 2, 3):
            shutil.copytree(base, folder / "checkpoints" / f"global_step_{step}" / "actor" / "huggingface")
        return 0

    monkeypatch.setattr(train_verl, "run", replay)
    out = tmp_path / "cmp"
    overrides = ["compare.budget_kind=steps", "compare.budget=3", "train.steps=3"]
    run_compare("smoke", ["prorl", "brorl"], out, overrides, progress=False, log=lambda _: None,
                verl=train_verl.VerlOptions(nodes=1, gpus_per_node=1))
    assert sorted(ran) == ["brorl", "prorl"]
    render(out)
    summary = json.loads((out / "summary.json").read_text())
    rows = {(r["method"], r["step"]) for r in summary["rows"]}
    assert {("prorl", 1), ("prorl", 3), ("brorl", 1), ("brorl", 3)} <= rows, rows
    assert summary["complete"] and (out / "tables.md").is_file() and (out / "figure1.png").is_file()
    assert "verl" in (out / "arms" / "brorl" / "seed0" / "verl" / "command.sh").read_text()
    metrics = [json.loads(line) for line in (out / "arms" / "brorl" / "seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [m["backend"] for m in metrics] == ["verl"] * 3 and metrics[0]["ds_pass_rate"] < 1.0
