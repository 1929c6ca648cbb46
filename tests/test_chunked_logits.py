"""The output layer in chunks and activation checkpointing compute what the plain update computes.

The update's forward returns the body's final hidden states and the loss applies lm_head ->
float32 / temperature -> log-softmax `train.logit_chunk_tokens` response tokens at a time, each
chunk recomputed in the backward (trainers/logits.py); `train.gradient_checkpointing`
recomputes the policy's blocks too, with the shared-prompt forward's prompt cache kept exact
(trainers/shared_prompt.py). The reference is the unchunked, uncheckpointed computation
(`logit_chunk_tokens=0`) on the same small random Qwen2, in float64 so that the tolerance can be
tight; chunk sizes include 1 and sizes that do not divide the number of tokens.
"""

import copy

import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks
from torch.utils._python_dispatch import TorchDispatchMode

from harness.config import load_config
from harness.jobs.bench import bench_update_memory
from trainers.grpo import _accumulate_gradients, _logprobs
from trainers.logits import token_logprobs
from trainers.shared_prompt import ScoredSequence, enable_gradient_checkpointing

from .conftest import random_groups

PROMPT_LENS = (6, 1, 13)
GROUP_SIZES = (3, 4, 2)
CHUNKS = (1, 7, 16, 10_000)  # 10_000: one chunk holds every token
F64 = {"rtol": 1e-10, "atol": 1e-12}


def train_config(chunk: int, budget: int = 100_000):
    overrides = [f"train.logit_chunk_tokens={chunk}", f"train.micro_batch_tokens={budget}", "train.temperature=1.3",
                 "train.kl_coef=0.5", "train.tis=true"]
    return load_config("smoke", overrides, recipe="prorl").train


def make_seqs(vocab: int, pad_id: int, seed: int = 0) -> list[ScoredSequence]:
    """Groups of different prompt lengths (one of a single token: no cache) and response lengths
    1..14, so micro-batches have padding and the token count (here 73) is prime to the chunks."""
    return random_groups(vocab, pad_id, PROMPT_LENS, GROUP_SIZES, (1, 15), seed)


@pytest.fixture
def policy64(model):
    return copy.deepcopy(model).double().train()


def loss_inputs(policy, seqs, pad_id):
    """Old-policy logprobs off by up to ~0.3 (some ratios clipped), rollout logprobs off by up to
    ~2.5 (TIS drops some tokens), a perturbed reference; a shuffled mini-batch of most sequences."""
    t = train_config(0)
    g = torch.Generator().manual_seed(1)
    reference = copy.deepcopy(policy)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        current = _logprobs(policy, seqs, t, pad_id)
        ref_logp = _logprobs(reference, seqs, t, pad_id)
    old_logp = [c + 0.3 * torch.randn(c.shape, generator=g, dtype=c.dtype) for c in current]
    for s, o in zip(seqs, old_logp):
        s.rollout_logp = (o + 2.5 * (torch.rand(o.shape, generator=g, dtype=o.dtype) - 0.5) * 2).tolist()
    members = torch.randperm(len(seqs), generator=g)[:8].tolist()
    return old_logp, ref_logp, members


def gradients(policy, seqs, members, old_logp, ref_logp, t, pad_id):
    policy.zero_grad(set_to_none=True)
    sums = _accumulate_gradients(policy, seqs, members, old_logp, ref_logp, t, pad_id)
    return sums, {name: p.grad.clone() for name, p in policy.named_parameters()}


def assert_same(sums, grads, expected_sums, expected_grads, **tol):
    assert sums["tokens"] == expected_sums["tokens"]
    assert sums["clip"] == expected_sums["clip"] and sums["dual_clip"] == expected_sums["dual_clip"]
    for key in ("loss", "kl", "entropy"):
        assert sums[key] == pytest.approx(expected_sums[key], rel=tol["rtol"], abs=tol["atol"]), key
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, **tol, msg=name)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_token_logprobs_and_gradients_equal_the_unchunked_output_layer(model, chunk):
    """The function alone, in float32: the model's own lm_head on random hidden states."""
    head = copy.deepcopy(model.get_output_embeddings())
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(4, 9, head.in_features, generator=g)
    targets = torch.randint(head.out_features, (4, 9), generator=g)
    mask = (torch.arange(9) < torch.tensor([[9], [4], [1], [7]])).float()
    weights = torch.randn(4, 9, generator=g)
    results = {}
    for k in (0, chunk):
        head.zero_grad(set_to_none=True)
        h = hidden.clone().requires_grad_(True)
        logp, ent = token_logprobs(head, h, targets, mask, 1.3, k, entropy=True)
        (logp * weights * mask).sum().backward()
        results[k] = (logp * mask, ent * mask, h.grad, head.weight.grad.clone())
    assert results[0][0].shape == (4, 9) and results[0][1].requires_grad is False
    for got, expected in zip(results[chunk], results[0]):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # the plain definition, once: log-softmax of the tempered logits, and its entropy
    logits = head(hidden).float() / 1.3
    expected = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(results[chunk][0], expected.detach() * mask, rtol=1e-5, atol=1e-6)
    probs = torch.softmax(logits, -1)
    torch.testing.assert_close(results[chunk][1], -(probs * probs.log()).sum(-1).detach() * mask, rtol=1e-5, atol=1e-5)


def test_chunks_keep_no_vocabulary_wide_tensor_for_the_backward(model):
    """What autograd saves outside the chunks' checkpoints: unchunked, the [rows, L, vocab]
    log-softmax; chunked, only the chunks' hidden states and targets."""
    head = model.get_output_embeddings()
    vocab = head.out_features
    hidden = torch.randn(3, 20, head.in_features, requires_grad=True)
    targets = torch.randint(vocab, (3, 20))
    saved = {}
    for chunk in (0, 7):
        shapes = []

        def pack(tensor, shapes=shapes):
            shapes.append(tuple(tensor.shape))
            return tensor

        with saved_tensors_hooks(pack, lambda tensor: tensor):
            token_logprobs(head, hidden, targets, torch.ones(3, 20), 1.0, chunk, entropy=True)
        saved[chunk] = shapes
    assert (3, 20, vocab) in saved[0]
    assert not [s for s in saved[7] if vocab in s], saved[7]
    assert max(s[0] for s in saved[7] if len(s) == 2) == 7  # the chunks' [7, hidden] inputs


@pytest.mark.parametrize("budget", [40, 100_000])
def test_loss_logprobs_and_gradients_do_not_depend_on_the_chunking(policy64, tokenizer, budget):
    pad_id = tokenizer.pad_token_id
    seqs = make_seqs(policy64.config.vocab_size, pad_id)
    old_logp, ref_logp, members = loss_inputs(policy64, seqs, pad_id)
    expected_sums, expected_grads = gradients(policy64, seqs, members, old_logp, ref_logp, train_config(0, budget), pad_id)
    assert expected_sums["clip"] > 0 and expected_sums["entropy"] > 0
    with torch.no_grad():
        expected_logp = _logprobs(policy64, seqs, train_config(0, budget), pad_id)
    for chunk in CHUNKS:
        t = train_config(chunk, budget)
        sums, grads = gradients(policy64, seqs, members, old_logp, ref_logp, t, pad_id)
        assert_same(sums, grads, expected_sums, expected_grads, **F64)
        with torch.no_grad():
            for got, expected in zip(_logprobs(policy64, seqs, t, pad_id), expected_logp):
                torch.testing.assert_close(got, expected, **F64)


def test_chunking_in_float32_matches_to_rounding(model, tokenizer):
    policy = copy.deepcopy(model).train()
    pad_id = tokenizer.pad_token_id
    seqs = make_seqs(policy.config.vocab_size, pad_id)
    old_logp, ref_logp, members = loss_inputs(policy, seqs, pad_id)
    expected = gradients(policy, seqs, members, old_logp, ref_logp, train_config(0), pad_id)
    for chunk in (1, 7):
        assert_same(*gradients(policy, seqs, members, old_logp, ref_logp, train_config(chunk), pad_id), *expected,
                    rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("chunk", [0, 7])
def test_gradient_checkpointing_recomputes_the_blocks_and_changes_nothing(policy64, tokenizer, chunk):
    """Checkpointed, the backward replays every block's forward (cache updates included): the
    prompt pass's and the response pass's caches are replay-safe, so loss and gradients equal the
    plain computation's, including the gradient that flows from the responses into the prompt."""
    pad_id = tokenizer.pad_token_id
    seqs = make_seqs(policy64.config.vocab_size, pad_id)
    old_logp, ref_logp, members = loss_inputs(policy64, seqs, pad_id)
    members = members + [i for i in range(len(seqs)) if i not in members]  # every group, the 1-token prompt too
    t = train_config(chunk, budget=60)
    expected = gradients(policy64, seqs, members, old_logp, ref_logp, train_config(0, budget=60), pad_id)

    checkpointed = copy.deepcopy(policy64)
    enable_gradient_checkpointing(checkpointed)
    checkpointed.train()
    with SiLUCount() as replayed:
        got = gradients(checkpointed, seqs, members, old_logp, ref_logp, t, pad_id)
    assert_same(*got, *expected, **F64)
    with SiLUCount() as plain:
        gradients(policy64, seqs, members, old_logp, ref_logp, t, pad_id)
    assert replayed.calls > plain.calls > 0  # the blocks' MLPs ran again in the backward
    # the blocks are marked safe to checkpoint with a cache only while the forward runs
    assert "_can_checkpoint_with_cache" not in vars(checkpointed.model.layers[0])


class SiLUCount(TorchDispatchMode):
    """Counts the SiLU evaluations (one per block's MLP forward, a replay included)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += func is torch.ops.aten.silu.default
        return func(*args, **(kwargs or {}))


def test_the_shape_memory_benchmark_runs_both_columns():
    """`harness bench memory --shape` on a tiny shape: one process per (length, chunking), a row each
    (figures only; nothing about them is asserted)."""
    shape = ["bootstrap.model.hidden_size=32", "bootstrap.model.num_hidden_layers=1", "bootstrap.model.num_attention_heads=2",
             "bootstrap.model.num_key_value_heads=1", "bootstrap.model.intermediate_size=64",
             "bootstrap.model.vocab_size=300", "rollout.device=cpu", "train.logit_chunk_tokens=0"]
    lines = []
    rows = bench_update_memory("smoke", shape, [5], log=lines.append)
    assert [(r["response_tokens"], r["logit_chunk_tokens"]) for r in rows] == [(5, 0), (5, 1024)]
    assert all(r["vocab_size"] == 300 and r["peak_rss_mb"] > 0 for r in rows)
    assert lines[-1].split("|")[0].strip() == "5" and len(lines) == 4
