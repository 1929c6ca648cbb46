"""The shared-prompt update computes what the per-sample update computes.

The trainer runs each prompt once per micro-batch and its responses against the prompt's KV cache
(trainers/shared_prompt.py `pad`). The reference here is the plainest per-sample computation: each
sequence alone (batch of one, no padding), prompt + response in one forward. Groups have different
prompt lengths (one of a single token, so its cached part is empty) and responses of different
lengths; small token budgets split groups over micro-batches and put several groups in one.
"""

import copy

import pytest
import torch

from harness.config import load_config
from harness.jobs.bench import per_sample_forward, per_sample_micro_batches
from trainers.core import kl_penalty, ppo_clip_objective, shared_prompt_micro_batches, truncated_is_weights
from trainers.grpo import _accumulate_gradients, _logprobs
from trainers.shared_prompt import SHARED_PROMPT, ScoredSequence, UpdateLayout, pad

from .conftest import random_groups

PER_SAMPLE = UpdateLayout(micro_batches=per_sample_micro_batches, forward=per_sample_forward)
PROMPT_LENS = (9, 1, 17, 4)
GROUP_SIZES = (5, 7, 4, 6)


def train_config(budget: int):
    overrides = [f"train.micro_batch_tokens={budget}", "train.temperature=1.3", "train.kl_coef=0.5", "train.tis=true"]
    return load_config("smoke", overrides, recipe="prorl").train


def make_seqs(vocab: int, pad_id: int, seed: int = 0) -> list[ScoredSequence]:
    return random_groups(vocab, pad_id, PROMPT_LENS, GROUP_SIZES, (1, 13), seed)


def per_sequence_logprobs(model, s: ScoredSequence, temperature: float) -> torch.Tensor:
    """The reference: one sequence alone, prompt and response in one forward."""
    logits = model(input_ids=torch.tensor([s.ids])).logits[0, s.prompt_len - 1: -1].float() / temperature
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(s.ids[s.prompt_len:]).unsqueeze(-1)).squeeze(-1)


def reference_loss(model, seqs, members, old_logp, ref_logp, t) -> tuple[torch.Tensor, float, float]:
    """The mini-batch loss sequence by sequence: token-level mean of PPO-clip x TIS + kl_coef x KL."""
    total = sum(len(seqs[i].ids) - seqs[i].prompt_len for i in members)
    loss, clip, kl_sum = 0.0, 0.0, 0.0
    for i in members:
        s = seqs[i]
        logp = per_sequence_logprobs(model, s, t.temperature)
        old = old_logp[i]
        pg, clipped = ppo_clip_objective(logp, old, torch.full_like(logp, s.advantage), t.eps_low, t.eps_high)
        weight, _ = truncated_is_weights(old, torch.tensor(s.rollout_logp), t.tis_low, t.tis_high)
        kl = kl_penalty(logp, ref_logp[i], t.kl_estimator)
        loss = loss + (pg * weight + t.kl_coef * kl).sum()
        clip += float(clipped.detach().sum())
        kl_sum += float(kl.detach().sum())
    return loss / total, clip, kl_sum


@pytest.fixture(params=["sdpa", "eager"])
def policy(request, model):
    policy = copy.deepcopy(model)
    policy.set_attn_implementation(request.param)
    return policy


def test_micro_batches_count_each_prompt_once_per_micro_batch():
    group = [0, 0, 0, 1, 1, 2]
    prompt = [10, 10, 10, 4, 4, 30]
    response = [3, 5, 2, 6, 1, 2]
    # members come back by group, then by response length: 2, 0, 1 | 4, 3 | 5. Costs (groups x
    # longest prompt + rows x longest response): [2, 0, 1] = 10 + 3x5 = 25; + [4] = 2x10 + 4x5 = 40
    # <= 44; + [3] = 2x10 + 5x6 = 50 > 44, so [3] starts anew; + [5] = 2x30 + 2x6 = 72 > 44.
    assert shared_prompt_micro_batches([5, 3, 0, 4, 2, 1], group, prompt, response, 44) == [[2, 0, 1, 4], [3], [5]]
    # per-sample packing would count the prompt in every row: 4 rows x (10 + 5) = 60
    assert shared_prompt_micro_batches(range(6), group, prompt, response, 10_000) == [[2, 0, 1, 4, 3, 5]]
    # a group larger than the budget is split; each slice carries the prompt once: 10 + 2x3 = 16
    assert shared_prompt_micro_batches([0, 1, 2], group, prompt, response, 20) == [[2, 0], [1]]
    assert shared_prompt_micro_batches([5], group, prompt, response, 1) == [[5]]  # too big alone: still runs
    assert shared_prompt_micro_batches([], group, prompt, response, 10) == []


def test_layout_positions_continue_from_each_groups_own_prompt(tokenizer):
    seqs = make_seqs(50, tokenizer.pad_token_id)
    rows = [0, 1, 5, 12]  # groups 0 (prompt 9), 1 (prompt 1), 2 (prompt 17)
    batch = pad(seqs, rows, tokenizer.pad_token_id, "cpu")
    assert batch.prompt_ids.shape == (3, 16) and batch.rows_per_prompt == [2, 1, 1]
    width = batch.input_ids.shape[1]
    for r, i in enumerate(rows):
        s = seqs[i]
        n = len(s.ids) - s.prompt_len
        assert batch.position_ids[r].tolist() == list(range(s.prompt_len - 1, s.prompt_len - 1 + width))
        assert batch.input_ids[r, :n].tolist() == s.ids[s.prompt_len - 1: -1]
        assert batch.targets[r, :n].tolist() == s.ids[s.prompt_len:]
        assert batch.mask[r].tolist() == [1.0] * n + [0.0] * (width - n)
        # the row sees its own prompt's P-1 cached tokens, never the prompt padding, all of its segment
        assert batch.attention_mask[r].tolist() == [1] * (s.prompt_len - 1) + [0] * (17 - s.prompt_len) + [1] * width


@pytest.mark.parametrize("budget", [40, 120, 100_000])
def test_logprobs_equal_the_per_sample_computation(policy, tokenizer, budget):
    t = train_config(budget)
    seqs = make_seqs(policy.config.vocab_size, tokenizer.pad_token_id)
    plan = SHARED_PROMPT.micro_batches(seqs, list(range(len(seqs))), budget)
    if budget < 100:  # the case this test is about: groups split, and groups sharing a micro-batch
        assert len(plan) > len(GROUP_SIZES) and any(len({seqs[i].group for i in m}) > 1 for m in plan)
    with torch.no_grad():
        shared = _logprobs(policy, seqs, t, tokenizer.pad_token_id)
        per_sample = _logprobs(policy, seqs, t, tokenizer.pad_token_id, PER_SAMPLE)
        for s, a, b in zip(seqs, shared, per_sample):
            expected = per_sequence_logprobs(policy, s, t.temperature)
            assert a.shape == expected.shape == (len(s.ids) - s.prompt_len,)
            torch.testing.assert_close(a, expected, atol=1e-5, rtol=0)
            torch.testing.assert_close(b, expected, atol=1e-5, rtol=0)  # the benchmark's baseline too


def test_a_micro_batch_of_single_token_prompts_needs_no_cache(policy, tokenizer):
    t = train_config(100_000)
    seqs = [s for s in make_seqs(policy.config.vocab_size, tokenizer.pad_token_id) if s.prompt_len == 1]
    assert pad(seqs, list(range(len(seqs))), tokenizer.pad_token_id, "cpu").prompt_ids.shape[1] == 0
    with torch.no_grad():
        for s, logp in zip(seqs, _logprobs(policy, seqs, t, tokenizer.pad_token_id)):
            torch.testing.assert_close(logp, per_sequence_logprobs(policy, s, t.temperature), atol=1e-5, rtol=0)


@pytest.mark.parametrize("budget", [40, 100_000])
def test_loss_and_gradients_equal_the_per_sample_computation(policy, tokenizer, budget):
    t = train_config(budget)
    pad_id = tokenizer.pad_token_id
    seqs = make_seqs(policy.config.vocab_size, pad_id)
    g = torch.Generator().manual_seed(1)
    reference = copy.deepcopy(policy)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        current = _logprobs(policy, seqs, t, pad_id)
        ref_logp = _logprobs(reference, seqs, t, pad_id)
    # old-policy logprobs off by up to ~0.3 so that some ratios are clipped; rollout logprobs off
    # by up to ~2.5 so that truncated importance sampling drops some tokens
    old_logp = [c + 0.3 * torch.randn(c.shape, generator=g) for c in current]
    for s, o in zip(seqs, old_logp):
        s.rollout_logp = (o + 2.5 * (torch.rand(o.shape, generator=g) - 0.5) * 2).tolist()
    members = torch.randperm(len(seqs), generator=g)[:17].tolist()  # a shuffled mini-batch

    policy.train()
    policy.zero_grad(set_to_none=True)
    expected_loss, expected_clip, expected_kl = reference_loss(policy, seqs, members, old_logp, ref_logp, t)
    expected_loss.backward()
    expected = {name: p.grad.clone() for name, p in policy.named_parameters()}
    assert expected_clip > 0

    for layout in (SHARED_PROMPT, PER_SAMPLE):
        policy.zero_grad(set_to_none=True)
        sums = _accumulate_gradients(policy, seqs, members, old_logp, ref_logp, t, pad_id, layout)
        assert sums["tokens"] == sum(len(seqs[i].ids) - seqs[i].prompt_len for i in members)
        assert sums["loss"] == pytest.approx(float(expected_loss.detach()), rel=1e-5)
        assert sums["clip"] == expected_clip
        assert sums["kl"] == pytest.approx(expected_kl, rel=1e-4)
        for name, p in policy.named_parameters():
            torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-7, msg=name)


def test_layout_refuses_rows_whose_groups_are_interleaved(tokenizer):
    seqs = make_seqs(50, tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="consecutively"):
        pad(seqs, [0, 5, 1], tokenizer.pad_token_id, "cpu")


def test_gradients_are_bitwise_reproducible(model, tokenizer):
    """Each prompt's keys/values reach its rows by expand + cat, not by an index select, whose CPU
    backward adds in parallel with atomics (the resume test compares weights bitwise)."""
    t = train_config(100_000)
    g = torch.Generator().manual_seed(2)
    seqs = []
    # large enough for the parallel kernels (256 rows x 39 cached prompt tokens), and unequal groups,
    # so that both threads of an index select's backward would add into the first prompt
    for group, size in enumerate((190, 66)):
        prompt = torch.randint(3, 300, (40,), generator=g).tolist()
        for _ in range(size):
            response = torch.randint(3, 300, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist()
            seqs.append(ScoredSequence(ids=prompt + response, prompt_len=40, group=group, rollout_logp=[0.0] * len(response),
                                  advantage=float(torch.randn(1, generator=g))))
    policy = copy.deepcopy(model).train()
    with torch.no_grad():
        old = _logprobs(policy, seqs, t, tokenizer.pad_token_id)
    for s, o in zip(seqs, old):
        s.rollout_logp = o.tolist()
    grads = []
    for _ in range(6):
        policy.zero_grad(set_to_none=True)
        _accumulate_gradients(policy, seqs, list(range(len(seqs))), [o - 0.1 for o in old], old, t, tokenizer.pad_token_id)
        grads.append([p.grad.clone() for p in policy.parameters()])
    assert torch.get_num_threads() > 1
    for other in grads[1:]:
        assert all(torch.equal(a, b) for a, b in zip(grads[0], other))
