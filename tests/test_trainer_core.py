"""The GRPO-family core on hand-computed tensors."""

import math

import pytest
import torch

from harness.config import ConfigError, TrainConfig, load_config
from trainers.core import (
    clamped_ratio,
    dual_clip_active,
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
    assert torch.allclose(group_advantages(rewards, normalise="sequences"), expected, atol=1e-5)


def test_group_advantages_of_a_zero_spread_batch_are_zero():
    for rule in ("tokens", "sequences"):
        advantages = group_advantages(torch.ones(3, 4), torch.full((3, 4), 5), normalise=rule)
        assert torch.equal(advantages, torch.zeros(3, 4))


# Lengths track reward: the correct responses are long (12 tokens), the wrong ones short (2).
TRACKING_REWARDS = [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]
TRACKING_LENGTHS = [[12, 2, 2, 2], [12, 12, 12, 2]]


def test_token_whitening_by_hand_when_length_tracks_reward():
    rewards, lengths = torch.tensor(TRACKING_REWARDS), torch.tensor(TRACKING_LENGTHS)
    # centred [.75,-.25,-.25,-.25], [.25,.25,.25,-.75]; every token carries its sequence's value
    centred = [0.75, -0.25, -0.25, -0.25, 0.25, 0.25, 0.25, -0.75]
    lens = [12, 2, 2, 2, 12, 12, 12, 2]
    tokens = sum(lens)  # 56
    mean = sum(n * c for n, c in zip(lens, centred)) / tokens  # 15 / 56, above 0.25
    var = sum(n * (c - mean) ** 2 for n, c in zip(lens, centred)) / (tokens - 1)  # Bessel, as verl
    expected = torch.tensor([(c - mean) / math.sqrt(var + 1e-8) for c in centred]).view(2, 4)
    by_tokens = group_advantages(rewards, lengths, normalise="tokens")
    assert torch.allclose(by_tokens, expected, atol=1e-6)
    assert torch.equal(group_advantages(rewards, lengths), by_tokens)  # tokens is the default
    # the rules disagree in sign: the token mean 15/56 exceeds the second group's correct
    # responses' centred reward 0.25, so they are pushed DOWN by tokens and up by sequences
    by_sequences = group_advantages(rewards, lengths, normalise="sequences")
    assert torch.all(by_tokens[1, :3] < 0) and torch.all(by_sequences[1, :3] > 0)


def test_token_and_sequence_whitening_agree_for_equal_lengths():
    rewards = torch.tensor(TRACKING_REWARDS)
    lengths = torch.full((2, 4), 7)
    tokens = 56
    by_tokens = group_advantages(rewards, lengths, normalise="tokens")
    by_sequences = group_advantages(rewards, lengths, normalise="sequences")
    # identical up to the token rule's Bessel factor (unbiased over 56 tokens vs population std)
    assert torch.allclose(by_tokens, by_sequences * math.sqrt((tokens - 1) / tokens), atol=1e-5)


def test_token_whitening_matches_verl_masked_whiten():
    """verl 0.9.1 `compute_reinforce_plus_plus_baseline_outcome_advantage`: the group-centred score
    tiled over the [sequences, tokens] grid times the response mask, then `masked_whiten` over the
    mask: masked mean (sum / (count + 1e-8)), masked variance with Bessel's count / (count - 1),
    (x - mean) * rsqrt(var + 1e-8), times the mask. Re-derived here on the padded grid."""
    g = torch.Generator().manual_seed(0)
    groups, n, longest = 6, 8, 30
    rewards = (torch.rand(groups, n, generator=g) < 0.4).float() + 0.1 * torch.rand(groups, n, generator=g)
    lengths = torch.randint(1, longest + 1, (groups, n), generator=g)
    lengths = torch.where(rewards > 0.5, lengths, lengths // 3)  # length tracks reward
    lengths[0, 0] = 0  # an empty response: verl's mask gives it 0
    scores = (rewards - rewards.mean(dim=1, keepdim=True)).flatten()
    mask = (torch.arange(longest).unsqueeze(0) < lengths.flatten().unsqueeze(1)).float()
    grid = scores.unsqueeze(1).expand(-1, longest) * mask
    count = mask.sum()
    mean = (grid * mask).sum() / (count + 1e-8)
    var = ((grid - mean) ** 2 * mask).sum() / (count + 1e-8) * (count / (count - 1))
    verl_grid = (grid - mean) * torch.rsqrt(var + 1e-8) * mask
    ours = group_advantages(rewards, lengths, normalise="tokens").flatten()
    assert torch.allclose(verl_grid, ours.unsqueeze(1) * mask, atol=1e-6)
    assert ours[0] == 0


def test_token_whitening_needs_lengths_and_a_known_rule():
    rewards = torch.tensor(TRACKING_REWARDS)
    with pytest.raises(ValueError, match="lengths"):
        group_advantages(rewards)
    with pytest.raises(ValueError, match="tokens, sequences"):
        group_advantages(rewards, torch.tensor(TRACKING_LENGTHS), normalise="samples")


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


def test_dual_clip_caps_the_loss_of_negative_advantages_only():
    old = torch.zeros(6)
    ratios = torch.tensor([5.0, 2.0, 5.0, 0.5, 1.1, 4.0])
    adv = torch.tensor([-1.0, -1.0, 1.0, 1.0, -2.0, -0.5])
    logp = torch.log(ratios).requires_grad_(True)
    loss, clipped = ppo_clip_objective(logp, old, adv, eps_low=0.2, eps_high=0.27)  # clip_ratio_c=3
    # A<0, ratio 5 > 3: capped at -A*3 = 3 (plain PPO: 5) | A<0, ratio 2 < 3: 2 | A>0: unchanged
    # (-1.27, -0.5) | A=-2, ratio 1.1: 2.2 | A=-0.5, ratio 4 > 3: 1.5 (plain: 2)
    assert torch.allclose(loss, torch.tensor([3.0, 2.0, -1.27, -0.5, 2.2, 1.5]), atol=1e-6)
    plain, plain_clipped = ppo_clip_objective(logp, old, adv, 0.2, 0.27, clip_ratio_c=None)
    assert torch.allclose(plain, torch.tensor([5.0, 2.0, -1.27, -0.5, 2.2, 2.0]), atol=1e-6)
    assert torch.equal(clipped, plain_clipped)  # `clipped` reports the ordinary clip only
    assert dual_clip_active(clamped_ratio(logp, old), adv, 3.0).tolist() == [True, False, False, False, False, True]
    assert not dual_clip_active(clamped_ratio(logp, old), adv, None).any()
    loss.sum().backward()
    grad = logp.grad
    assert grad[0] == 0 and grad[5] == 0  # capped: constant in logp
    assert grad[1] == pytest.approx(2.0) and grad[4] == pytest.approx(2.2)  # -A * ratio
    assert grad[2] == 0 and grad[3] == pytest.approx(-0.5)  # A>0 as plain PPO-clip
    with pytest.raises(ValueError, match="> 1"):
        ppo_clip_objective(logp, old, adv, 0.2, 0.27, clip_ratio_c=1.0)


@pytest.mark.parametrize("log_ratio", [25.0, 100.0])
@pytest.mark.parametrize("clip_ratio_c", [3.0, None])
def test_huge_log_ratio_gives_a_finite_loss_and_gradient(log_ratio, clip_ratio_c):
    old = torch.zeros(2)
    logp = torch.full((2,), log_ratio, requires_grad=True)
    adv = torch.tensor([-1.0, 1.0])
    loss, _ = ppo_clip_objective(logp, old, adv, 0.2, 0.27, clip_ratio_c=clip_ratio_c)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logp.grad).all()
    # A<0: capped at 3 by the dual clip, else at the clamped ratio e^20; A>0: clipped at -(1 + 0.27)
    assert loss[0].item() == pytest.approx(3.0 if clip_ratio_c else math.exp(20.0), rel=1e-6)
    assert loss[1].item() == pytest.approx(-1.27)
    assert torch.equal(logp.grad, torch.zeros(2))  # past the clamp nothing moves the loss


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


def test_truncated_is_weights_are_finite_for_a_huge_log_ratio():
    old = torch.tensor([0.0, 0.0, 0.0])
    rollout = torch.tensor([-100.0, 100.0, -25.0])  # w = e^100 (inf in float32), e^-100, e^25
    w, keep = truncated_is_weights(old, rollout, low=0.5, high=5.0)
    assert keep.tolist() == [0.0, 0.0, 0.0]
    assert w.tolist() == [0.0, 0.0, 0.0]  # not inf * 0 = NaN


def test_entropy_of_uniform_and_peaked():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    ent = token_entropy(logits)
    assert ent[0].item() == pytest.approx(math.log(4)) and ent[1].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("override", ["train.clip_ratio_c=1", "train.clip_ratio_c=0", "train.adv_normalise=samples",
                                      "train.log_ratio_clamp=0"])
def test_bad_loss_settings_are_one_line_config_errors(override):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", [override])
    assert "\n" not in str(err.value) and override.split("=")[0] in str(err.value)


def test_dual_clip_can_be_turned_off_and_defaults_match_the_loss():
    assert load_config("tiny", ["train.clip_ratio_c=null"]).train.clip_ratio_c is None
    # the loss function's defaults are the config's, so callers that pass none train the recipe
    defaults = ppo_clip_objective.__defaults__
    assert defaults == (TrainConfig.clip_ratio_c, TrainConfig.log_ratio_clamp)
    assert TrainConfig.adv_normalise == "tokens"
