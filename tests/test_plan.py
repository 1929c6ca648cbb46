"""`harness plan` and the `prorlv2-1.5b` profile on a machine without a GPU: the plan prints from
the profile alone, and training with the profile is refused in one line before anything is loaded."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from harness.config import ModelShape, load_config
from harness.jobs.plan import model_shape, parameter_count, render_plan


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("tied", [True, False])
def test_parameter_count_is_the_models(tied):
    shape = ModelShape(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=96, vocab_size=500, tie_word_embeddings=tied)
    model = Qwen2ForCausalLM(Qwen2Config(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                         intermediate_size=96, vocab_size=500, tie_word_embeddings=tied))
    assert parameter_count(shape) == sum(p.numel() for p in model.parameters())


def test_the_profile_holds_the_papers_run():
    prorl = load_config("prorlv2-1.5b", recipe="prorl")
    brorl = load_config("prorlv2-1.5b", recipe="brorl")
    assert prorl.base.checkpoint == "nvidia/Nemotron-Research-Reasoning-Qwen-1.5B" and prorl.base.revision == "v2"
    assert prorl.requires == "cuda" and prorl.rollout.engine == "vllm" and prorl.rollout.dtype == "bfloat16"
    assert prorl.train.dtype == "float32" and prorl.train.max_new_tokens == 16384
    assert (prorl.train.n, prorl.train.prompts_per_step, brorl.train.rollout_scaling.n) == (16, 512, 512)
    assert (prorl.train.eps_low, prorl.train.eps_high, prorl.train.kl_coef, prorl.train.kl_estimator) == (0.2, 0.27, 1e-4, "k2")
    assert (prorl.train.tis, prorl.train.tis_low, prorl.train.tis_high) == (True, 0.5, 5.0)
    assert (prorl.eval.k, prorl.eval.temperature, prorl.eval.top_p, prorl.eval.max_new_tokens) == (16, 0.6, 0.95, 32768)
    assert prorl.suites.math.benchmarks == ["aime24", "aime25", "amc", "math500", "minerva", "olympiadbench"]
    assert prorl.suites.code.benchmarks == ["apps", "codecontests", "codeforces", "taco"]
    assert prorl.suites.reasoning_gym.preset == "prorl96"


def test_plan_prints_without_the_checkpoint_or_a_gpu():
    text = render_plan("prorlv2-1.5b")
    shape, source = model_shape(load_config("prorlv2-1.5b"))
    assert "base.shape" in source and f"{parameter_count(shape) / 1e9:.3f}B parameters" in text
    assert "N=16   prompts=512  samples=8192" in text and "N=512  prompts=128  samples=65536" in text
    for item in ("AdamW state", "activations, one micro-batch", "logits", "vLLM weights", "vLLM KV cache", "trainer total"):
        assert item in text
    done = _cli("plan", "--profile", "prorlv2-1.5b")
    assert done.returncode == 0 and done.stdout.startswith("plan for profile 'prorlv2-1.5b'")


def test_plan_reads_a_local_checkpoints_config(tmp_path):
    Qwen2Config(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=96, vocab_size=500).save_pretrained(tmp_path)
    cfg = load_config("prorlv2-1.5b", [f"base.checkpoint={tmp_path}"])
    shape, source = model_shape(cfg)
    assert source.endswith("config.json") and (shape.hidden_size, shape.vocab_size) == (64, 500)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", [["train", "prorl"], ["compare", "prorl", "brorl"], ["bench", "memory"],
                                     ["bench", "update"]])
def test_training_the_gpu_profile_on_a_cpu_is_one_line_before_anything(tmp_path, command):
    out = tmp_path / "run"
    done = _cli(*command, "--profile", "prorlv2-1.5b", *(["--out", str(out)] if command[0] != "bench" else []))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "profile 'prorlv2-1.5b' needs CUDA GPUs" in lines[0] and "harness plan --profile prorlv2-1.5b" in lines[0]
    assert not out.exists()


def test_bootstrap_of_a_profile_with_a_base_checkpoint_is_refused():
    done = _cli("bootstrap", "--profile", "prorlv2-1.5b")
    assert done.returncode == 2 and "no base to bootstrap" in done.stderr


def test_bad_plan_arguments_are_one_line():
    done = _cli("plan", "--profile", "prorlv2-1.5b", "--gpu-memory-gib", "0")
    assert done.returncode == 2 and "--gpu-memory-gib" in done.stderr.strip().splitlines()[-1]


def test_plan_prints_one_evaluations_tokens_gpu_hours_and_wall_time():
    from harness.jobs.plan import eval_items, eval_plan

    cfg = load_config("prorlv2-1.5b")
    items = eval_items(cfg)
    assert {name: n for name, (n, _) in items.items()} == {"math": 1590, "code": 1024, "reasoning_gym": 9516}
    lines = eval_plan(cfg, [1, 64], rate=7500)
    text = "\n".join(lines)
    # 16 x (1,590 x 16,506 + 1,024 x 26,808 + 9,516 x 4,000..8,000) tokens at 7,500 tokens/s
    low = 16 * (1590 * 16506 + 1024 * 26808 + 9516 * 4000)
    high = 16 * (1590 * 16506 + 1024 * 26808 + 9516 * 8000)
    assert f"{low / 1e9:.2f}B-{high / 1e9:.2f}B generated tokens" in text
    assert f"{low / 7500 / 3600:.1f} h-{high / 7500 / 3600:.1f} h GPU-hours" in text
    one, many = (line for line in lines if "wall time" in line)
    assert f"{low / 7500 / 3600:.1f} h" in one  # one replica does all of it
    assert "--replicas 64" in many and "Reasoning Gym not reported, 4,000-8,000 assumed" in text
    done = _cli("plan", "--profile", "prorlv2-1.5b", "--replicas", "2,16", "--decode-tokens-per-s", "15000")
    assert done.returncode == 0 and "--replicas 16" in done.stdout and "at 15,000 tokens/s" in done.stdout
    # a small profile's responses are capped at its eval.max_new_tokens
    smoke = "\n".join(eval_plan(load_config("smoke"), [1]))
    assert "40 items (eval_items) x 16 x 40 tokens" in smoke
