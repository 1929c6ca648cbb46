"""The GRPO-family core on hand-computed tensors."""

import math

import pytest
import torch

from trainers.core import (
    group_advantages,
    kl_penalty,
    masked_token_mean,
    ppo_clip_objective,
    token_entropy,
    truncated_is_weights,
    zero_spread_groups,
)


def test_group_advantages_subtract_group_mean_then_normalise_over_batch():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    # group means 0.5 and 0.75 -> centred [.5,-.5,-.5,.5], [.25,.25,.25,-.75]
    centred = [0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75]
    mean = sum(centred) / 8  # 0.0
    std = math.sqrt(sum((c - mean) ** 2 for c in centred) / 8)
    expected = torch.tensor([(c - mean) / std for c in centred]).view(2, 4)
    assert torch.allclose(group_advantages(rewards), expected, atol=1e-5)


def test_group_advantages_of_a_zero_spread_batch_are_zero():
    assert torch.equal(group_advantages(torch.ones(3, 4)), torch.zeros(3, 4))


def test_zero_spread_groups():
    rewards = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 1.0], [0.25, 0.25], [0.25, 0.5]])
    assert zero_spread_groups(rewards).tolist() == [True, True, False, True, False]


def test_token_level_aggregation_weights_every_token_equally():
    values = torch.tensor([[1.0, 1.0, 1.0, 1.0], [5.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    assert masked_token_mean(values, mask).item() == pytest.approx(9 / 5)  # not (1 + 5) / 2
    assert masked_token_mean(values, mask, num_tokens=10).item() == pytest.approx(0.9)


def test_ppo_clip_values_by_hand():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.0, 1.5, 0.5, 0.9]]))
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    loss, clipped = ppo_clip_objective(logp, old, adv, eps_low=0.2, eps_high=0.27)
    # ratio 1.0, A>0: -1.0 | ratio 1.5 > 1.27, A>0: clipped -1.27 | ratio 0.5 < 0.8, A<0: clipped 0.8
    # ratio 0.9 within range, A<0: 0.9
    assert torch.allclose(loss, torch.tensor([[-1.0, -1.27, 0.8, 0.9]]), atol=1e-6)
    assert clipped.tolist() == [[0.0, 1.0, 1.0, 0.0]]


def test_ppo_clip_gradient_is_zero_outside_the_range_on_the_right_side():
    old = torch.zeros(4)
    # positive advantage above 1+eps_high, negative advantage below 1-eps_low: clipped, no gradient
    # positive advantage below 1-eps_low, negative above 1+eps_high: NOT clipped (pessimistic bound)
    ratios = torch.tensor([1.4, 0.6, 0.6, 1.4])
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    logp = torch.log(ratios).requires_grad_(True)
    loss, _ = ppo_clip_objective(logp, old, adv, eps_low=0.2, eps_high=0.27)
    loss.sum().backward()
    grad = logp.grad
    assert grad[0] == 0 and grad[1] == 0
    assert grad[2] == pytest.approx(-0.6) and grad[3] == pytest.approx(1.4)


def test_decoupled_bounds_are_asymmetric():
    old = torch.zeros(2)
    logp = torch.log(torch.tensor([1.25, 1.25])).requires_grad_(True)
    loss, clipped = ppo_clip_objective(logp, old, torch.tensor([1.0, 1.0]), eps_low=0.2, eps_high=0.27)
    assert clipped.sum() == 0  # 1.25 < 1 + 0.27: still learning although 1.25 > 1 + 0.2
    loss.sum().backward()
    assert torch.all(logp.grad != 0)


def test_kl_estimators_by_hand():
    logp = torch.log(torch.tensor([0.5, 0.2]))
    ref = torch.log(torch.tensor([0.25, 0.2]))
    d = math.log(2.0)
    assert torch.allclose(kl_penalty(logp, ref, "k2"), torch.tensor([0.5 * d * d, 0.0]), atol=1e-6)
    # k3: r = ref/p = 0.5 -> 0.5 - log(0.5) - 1
    assert torch.allclose(kl_penalty(logp, ref, "low_var_kl"), torch.tensor([0.5 + d - 1.0, 0.0]), atol=1e-6)
    with pytest.raises(ValueError, match="k2"):
        kl_penalty(logp, ref, "k9")


def test_kl_penalty_gradient_pulls_towards_reference():
    ref = torch.tensor([0.0])
    logp = torch.tensor([0.5], requires_grad=True)
    kl_penalty(logp, ref, "k2").sum().backward()
    assert logp.grad.item() == pytest.approx(0.5)


def test_truncated_is_masks_tokens_outside_bounds():
    old = torch.log(torch.tensor([0.5, 0.5, 0.5]))
    rollout = torch.log(torch.tensor([0.5, 0.05, 0.9]))  # w = 1, 10, 0.56
    w, keep = truncated_is_weights(old, rollout, low=0.5, high=5.0)
    assert keep.tolist() == [1.0, 0.0, 1.0]
    assert torch.allclose(w, torch.tensor([1.0, 0.0, 0.5 / 0.9]), atol=1e-6)


def test_entropy_of_uniform_and_peaked():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    ent = token_entropy(logits)
    assert ent[0].item() == pytest.approx(math.log(4)) and ent[1].item() == pytest.approx(0.0, abs=1e-6)
