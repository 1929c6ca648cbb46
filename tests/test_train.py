"""`harness train`: both arms, recipes, plug-in trainers, dynamic-sampling cap, exact resume."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from safetensors.torch import load_file

from harness.config import load_config
from harness.jobs.train import format_learning, learning_summary, run_training
from harness.runs import TIMING_KEYS, read_metrics
from tests.conftest import run_cli
from trainers import registry, rollout_scaling, step_scaling

REQUIRED = ("step", "reward_mean", "ds_pass_rate", "gen_samples_per_s", "train_tokens_per_s", "loss",
            "clip_frac", "kl", "entropy", "mean_response_tokens", "wall_s")


def test_recipes_hold_the_papers_values(tmp_path):
    empty = tmp_path / "paper.yaml"
    empty.write_text("seed: 0\n")
    prorl = step_scaling.settings(load_config(str(empty), recipe="prorl").train)
    assert (prorl.n, prorl.prompts_per_step, prorl.learning_rate) == (16, 512, 1e-6)
    brorl_cfg = load_config(str(empty), recipe="brorl")
    brorl = rollout_scaling.settings(brorl_cfg.train)
    assert brorl_cfg.train.trainer == "rollout_scaling"
    assert (brorl.n, brorl.prompts_per_step) == (512, 128)
    assert brorl.learning_rate == pytest.approx(1e-6 * math.sqrt(65536 / 8192))
    t = brorl_cfg.train
    assert (t.eps_low, t.eps_high, t.kl_coef, t.kl_estimator, t.mini_batches) == (0.2, 0.27, 1e-4, "k2", 4)


def test_arms_differ_only_where_the_paper_says():
    prorl = load_config("tiny", recipe="prorl")
    brorl = load_config("tiny", recipe="brorl")
    a, b = step_scaling.settings(prorl.train), rollout_scaling.settings(brorl.train)
    assert (a.n, b.n) == (16, 512)
    assert b.prompts_per_step == a.prompts_per_step // 4
    assert b.learning_rate == a.learning_rate  # the tiny profile's documented rule (lr_rule: none)
    shared_a = {k: v for k, v in vars(prorl.train).items() if k != "trainer"}
    shared_b = {k: v for k, v in vars(brorl.train).items() if k != "trainer"}
    assert shared_a == shared_b  # same mini-batches, clip, KL, temperature, ...


def test_lr_rules():
    cfg = load_config("tiny", ["train.rollout_scaling.lr_rule=sqrt"], recipe="brorl")
    assert rollout_scaling.settings(cfg.train).learning_rate == pytest.approx(cfg.train.learning_rate * math.sqrt(8))
    cfg = load_config("tiny", ["train.rollout_scaling.lr_rule=linear"], recipe="brorl")
    assert rollout_scaling.settings(cfg.train).learning_rate == pytest.approx(cfg.train.learning_rate * 8)
    cfg = load_config("tiny", ["train.rollout_scaling.lr_rule=none"], recipe="brorl")
    assert rollout_scaling.settings(cfg.train).learning_rate == pytest.approx(cfg.train.learning_rate)


def test_unknown_trainer_and_recipe_exit_2(tmp_path):
    done = run_cli(["train", "prorl", "--profile", "smoke", "--out", str(tmp_path / "x"), "train.trainer=nope"], tmp_path)
    assert done.returncode == 2 and "nope" in done.stderr and "step_scaling" in done.stderr
    done = run_cli(["train", "grpo", "--profile", "smoke"], tmp_path)
    assert done.returncode == 2 and "unknown recipe 'grpo'" in done.stderr


@pytest.mark.slow
def test_train_brorl_smoke_writes_metrics_and_a_loadable_checkpoint(smoke_base, tmp_path):
    from transformers import AutoModelForCausalLM

    base, cache = smoke_base
    out = tmp_path / "run"
    done = run_cli(["train", "brorl", "--profile", "smoke", "--out", str(out), "--quiet", "train.steps=2"], cache)
    assert done.returncode == 0, done.stderr
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert set(REQUIRED) <= set(row)
        assert 0 <= row["ds_pass_rate"] <= 1 and row["gen_samples_per_s"] > 0
    assert rows[-1]["samples_generated"] >= 2 * 512 * 2  # N=512, 2 prompts per step
    final = out / "checkpoints" / "step_000002"
    assert done.stdout.strip().splitlines()[-1] == str(final)
    model = AutoModelForCausalLM.from_pretrained(final)
    changed = load_file(final / "model.safetensors")
    original = load_file(base / "model.safetensors")
    assert any(not torch.equal(changed[k], original[k]) for k in changed)  # the policy was updated
    config = json.loads((out / "config.json").read_text())
    assert config["arm"]["n"] == 512 and config["arm"]["trainer"] == "rollout_scaling"
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert model.config.model_type == "qwen2"
    # an existing run is never overwritten by accident
    again = run_cli(["train", "brorl", "--profile", "smoke", "--out", str(out), "train.steps=2"], cache)
    assert again.returncode == 2 and "--resume" in again.stderr


def test_learning_summary_compares_the_first_and_last_fifth_of_steps():
    rows = [{"step": i + 1, "reward_mean": r} for i, r in enumerate([0.1, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.6, 0.7, 0.8])]
    summary = learning_summary(rows)
    assert summary["window"] == 2 and summary["steps"] == 10
    assert summary["reward_first_20pct"] == pytest.approx(0.15)
    assert summary["reward_last_20pct"] == pytest.approx(0.75)
    test = summary["last_minus_first"]
    assert test["mean_diff"] == pytest.approx(0.6)
    lo, hi = test["ci95"]
    assert lo < 0.6 < hi and test["p_value"] < 0.05
    assert "difference +0.600 (95% CI [" in format_learning(summary)
    # one step per window: the difference, and no interval pretended
    short = learning_summary(rows[:4])
    assert short["window"] == 1 and short["last_minus_first"]["ci95"] is None
    assert format_learning(short).endswith("difference +0.200 (one step per window: no interval)")


@pytest.mark.slow
def test_train_starts_from_a_named_bootstrap_checkpoint(smoke_base, tmp_path):
    base, cache = smoke_base
    out = tmp_path / "run"
    done = run_cli(["train", "prorl", "--profile", "smoke", "--out", str(out), "--quiet", "--base", "base:sft",
                    "train.steps=1"], cache)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "config.json").read_text())["base_checkpoint"] == str(base / "sft")
    bad = run_cli(["train", "prorl", "--profile", "smoke", "--out", str(tmp_path / "bad"), "--base", "base:nope"], cache)
    assert bad.returncode == 2 and "base:nope" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_dynamic_sampling_cap_trains_on_what_was_kept_and_never_crashes(smoke_base, tmp_path):
    base, _ = smoke_base
    # temperature ~0: all n samples of a prompt are identical, so every group has zero spread
    cfg = load_config("smoke", ["train.steps=1", "train.temperature=1e-6", "train.max_gen_rounds=2"], recipe="prorl")
    run_training(cfg, "prorl", tmp_path / "run", base=str(base), progress=False, log=lambda _: None)
    (row,) = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert row["kept_groups"] == 0 and row["ds_cap_hit"] is True and row["gen_rounds"] == 2
    assert row["ds_pass_rate"] == 0.0 and row["loss"] is None


@pytest.mark.slow
def test_micro_batches_change_accumulation_not_the_result(smoke_base, tmp_path):
    base, _ = smoke_base
    weights = []
    for budget in (100_000, 200):
        cfg = load_config("smoke", ["train.steps=1", f"train.micro_batch_tokens={budget}"], recipe="prorl")
        final = run_training(cfg, "prorl", tmp_path / str(budget), base=str(base), progress=False, log=lambda _: None)
        weights.append(load_file(final / "model.safetensors"))
    lr = json.loads((tmp_path / "200" / "config.json").read_text())["arm"]["learning_rate"]
    # Accumulating in other micro-batches sums the gradient in another order. Adam's first step is
    # lr * g / (|g| + eps): ~lr whatever |g| where |g| >> eps, so the sums' rounding does not show;
    # but a gradient that cancels to ~eps moves with it (seen here: 1 element of 1.1M, 4.6e-6 off,
    # on a machine with AVX-512 kernels). So: equal to 1e-6 almost everywhere, within lr / 10 anywhere.
    off = total = 0
    for key in weights[0]:
        diff = (weights[0][key] - weights[1][key]).abs()
        assert diff.max().item() <= lr / 10, key
        off += int((diff > 1e-6).sum())
        total += diff.numel()
    assert off <= total * 1e-5, (off, total)


PLUGIN = textwrap.dedent('''
    from trainers.grpo import ArmSettings, GRPOTrainer

    def build(*, train, rollout, scoring, seed, model, tokenizer, suites):
        arm = ArmSettings(n=4, prompts_per_step=2, learning_rate=1e-4, lr_rule="plug-in")
        return GRPOTrainer("tiny_plugin", arm, train=train, rollout=rollout, scoring=scoring, seed=seed, model=model,
                           tokenizer=tokenizer, suites=suites)
''')


@pytest.mark.slow
def test_third_party_trainer_joins_through_entry_points(smoke_base, tmp_path, monkeypatch):
    base, _ = smoke_base
    site = tmp_path / "site"
    (site / "my_trainer_pkg").mkdir(parents=True)
    (site / "my_trainer_pkg" / "__init__.py").write_text(PLUGIN)
    dist = site / "my_trainer_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-trainer-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harness.trainers]\ntiny_plugin = my_trainer_pkg:build\n")
    monkeypatch.syspath_prepend(str(site))
    assert "tiny_plugin" in registry.available()
    cfg = load_config("smoke", ["train.steps=1", "train.trainer=tiny_plugin"], recipe="prorl")
    run_training(cfg, "plugin", tmp_path / "run", base=str(base), progress=False, log=lambda _: None)
    (row,) = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert row["samples_generated"] % 4 == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["arm"]["lr_rule"] == "plug-in"


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_identical(smoke_base, tmp_path):
    base, cache = smoke_base
    args = ["train", "prorl", "--profile", "smoke", "--quiet", "--base", str(base), "train.steps=6", "train.save_every=2"]
    full = tmp_path / "full"
    done = run_cli(args + ["--out", str(full)], cache)
    assert done.returncode == 0, done.stderr
    assert "mean training reward, first 1 of 6 steps" in done.stdout

    cut = tmp_path / "cut"
    env = {**os.environ, "HARNESS_CACHE": str(cache)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args, "--out", str(cut)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (cut / "checkpoints" / "step_000002").is_dir():
        assert proc.poll() is None and time.time() < deadline, "run ended before its first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "checkpoints" / "step_000006").exists()
    resumed = run_cli(args + ["--out", str(cut), "--resume"], cache)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr

    a = load_file(full / "checkpoints" / "step_000006" / "model.safetensors")
    b = load_file(cut / "checkpoints" / "step_000006" / "model.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]
    rows_a, rows_b = read_metrics(full / "metrics.jsonl"), read_metrics(cut / "metrics.jsonl")
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4, 5, 6]
    assert strip(rows_a) == strip(rows_b)
    # resuming a finished run (progress bar on) changes nothing and says so
    again = run_cli([a for a in args if a != "--quiet"] + ["--out", str(cut), "--resume"], cache)
    assert again.returncode == 0 and "budget already spent" in again.stderr, again.stderr
    assert read_metrics(cut / "metrics.jsonl") == rows_b


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_after_the_step_with_a_checkpoint_and_resumes(smoke_base, tmp_path, sig):
    base, cache = smoke_base
    out = tmp_path / "run"
    args = ["train", "prorl", "--profile", "smoke", "--quiet", "--base", str(base), "--out", str(out)]
    env = {**os.environ, "HARNESS_CACHE": str(cache)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args, "train.steps=500"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while len(read_metrics(out / "metrics.jsonl")) < 2:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    rows = read_metrics(out / "metrics.jsonl")
    last = rows[-1]["step"]
    assert [r["step"] for r in rows] == list(range(1, last + 1))
    assert (out / "checkpoints" / f"step_{last:06d}" / "model.safetensors").is_file()
    assert not list((out / "checkpoints").glob(".*tmp"))
    resumed = run_cli(args + ["--resume", f"train.steps={last + 1}"], cache)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == list(range(1, last + 2))


def test_a_builder_with_another_signature_is_refused_naming_both():
    def old_style(config, model, tokenizer, suites):
        return None

    with pytest.raises(ValueError, match=r"trainer 'old': its builder takes \(config, model, tokenizer, suites\); "
                                         r"a trainer builder takes \(train, rollout, scoring, seed, model, tokenizer, suites\)"):
        registry.check_builder("old", old_style)
    for name in ("step_scaling", "rollout_scaling"):
        assert registry.get_builder(name) is not None  # the built-ins pass the same check
