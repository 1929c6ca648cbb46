"""The single-GPU path's numerics on CUDA: they skip on a machine without one (every CI machine) and
are what scripts/gpu-first-session.sh runs first on a GPU.

What they guard is what a CPU cannot show: bf16 autocast and chunked output layer on CUDA kernels
compute the same loss and gradients as the unchunked layer, and the `hf` engine's bf16 copy on the
GPU samples with logprobs the fp32 trainer recomputes within bf16's error. The model is the
session's small random Qwen2 (tests/conftest.py), moved to the GPU.
"""

import copy

import pytest
import torch

from harness.config import load_config
from harness.rollout import SamplingParams
from harness.rollout.hf import HFRolloutEngine
from trainers.grpo import _accumulate_gradients, _logprobs
from trainers.shared_prompt import ScoredSequence

from .conftest import random_groups

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu-first-session.sh)")


def train_config(chunk: int):
    overrides = [f"train.logit_chunk_tokens={chunk}", "train.autocast_dtype=bfloat16", "train.kl_coef=0.1",
                 "train.tis=true", "train.temperature=1.0"]
    return load_config("smoke", overrides, recipe="prorl").train


def sequences(vocab: int, pad_id: int) -> list[ScoredSequence]:
    return random_groups(vocab, pad_id, (9, 4), (3, 5), (2, 30))


def test_chunked_output_layer_under_bf16_autocast_matches_the_whole_layer_on_cuda(model, tokenizer):
    policy = copy.deepcopy(model).cuda().float().train()
    pad_id = tokenizer.pad_token_id
    seqs = sequences(policy.config.vocab_size, pad_id)
    with torch.no_grad():
        old = _logprobs(policy, seqs, train_config(0), pad_id)
    for s, o in zip(seqs, old):
        s.rollout_logp = o.tolist()
    results = {}
    for chunk in (0, 7):
        policy.zero_grad(set_to_none=True)
        sums = _accumulate_gradients(policy, seqs, list(range(len(seqs))), old, old, train_config(chunk), pad_id)
        results[chunk] = (sums, {n: p.grad.clone() for n, p in policy.named_parameters()})
    (sums0, grads0), (sums7, grads7) = results[0], results[7]
    assert sums7["tokens"] == sums0["tokens"]
    assert sums7["loss"] == pytest.approx(sums0["loss"], rel=1e-3, abs=1e-4)
    for name, grad in grads0.items():  # bf16 rounds elementwise: the whole gradient's relative error
        error = float((grads7[name] - grad).norm() / grad.norm().clamp(min=1e-12))
        assert error < 2e-2, f"{name}: chunked gradient off by {error:.2e} of its norm"



def test_hf_engine_bf16_copy_on_cuda_samples_what_the_fp32_trainer_recomputes(model, tokenizer):
    policy = copy.deepcopy(model).cuda().float().eval()
    engine = HFRolloutEngine(policy, tokenizer, dtype=torch.bfloat16)
    assert engine.model is not policy and engine.model.dtype == torch.bfloat16
    result = engine.generate(["12 + 7 =", "the cat"], 8, SamplingParams(temperature=1.0, max_new_tokens=12, seed=3))
    seqs = [ScoredSequence(ids=list(g.prompt_ids) + s.token_ids, prompt_len=len(g.prompt_ids), group=i,
                           rollout_logp=s.logprobs, advantage=0.0)
            for i, g in enumerate(result.groups) for s in g.samples]
    with torch.no_grad():
        recomputed = _logprobs(policy, seqs, train_config(0), tokenizer.pad_token_id)
    gap = max(float((r.cpu() - torch.tensor(s.rollout_logp)).abs().max()) for r, s in zip(recomputed, seqs))
    assert gap < 0.1, f"bf16 sampling logprobs differ from the fp32 trainer's by up to {gap:.3f}"
