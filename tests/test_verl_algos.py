"""The harness's RL math (trainers/core.py, composed as in grpo.py `_accumulate_gradients`)
against verl 0.9.1's own functions, on random float64 tensors.

Where the math is the same the numbers agree to 1e-10 (the advantages up to verl's count + 1e-8, see
that test); where it differs on purpose the test asserts the exact difference. The verl settings
that reproduce the harness (what a recipe compiles to):

    algorithm.adv_estimator=reinforce_plus_plus_baseline          train.adv_normalise=tokens
    actor.policy_loss.loss_mode=vanilla                           ppo_clip_objective
    actor.clip_ratio_low=eps_low  actor.clip_ratio_high=eps_high
    actor.clip_ratio_c=clip_ratio_c  (harness null: any value > e^20, e.g. 1e9; verl cannot turn it off)
    actor.loss_agg_mode=token-mean                                masked_token_mean over the mini-batch
    actor.entropy_coeff=0                                         (the harness only logs the entropy)
    actor.use_kl_loss=true  actor.kl_loss_coef=kl_coef            (kl_coef 0: use_kl_loss=false)
    actor.kl_loss_type=mse (or k2) for k2, low_var_kl (or k3) for low_var_kl; NOT the "+" variants,
        and set it explicitly: verl's default is low_var_kl, the harness's k2
    algorithm.use_kl_in_reward=false
    algorithm.rollout_correction: rollout_is=token  rollout_is_threshold="{tis_low}_{tis_high}"
        (IcePop, "0.5_5.0"; verl's preset RolloutCorrectionConfig.decoupled_token_icepop())
        rollout_rs=null  rollout_is_batch_normalize=false  bypass_mode=false;
        train.tis=false: rollout_is=null (the yaml default; the dataclass default is "sequence")

Not closable (see the tests): the harness's `log_ratio_clamp` is configurable, verl's is fixed at 20;
a group of one response is centred to 0 by the harness, kept raw by verl (unreachable here: dynamic
sampling drops it); `rollout_rs=token_k1` is NOT IcePop (other ratio direction, and it edits the
response mask, so it also changes the token count and the advantage whitening).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainers.core import (
    dual_clip_active,
    group_advantages,
    kl_penalty,
    masked_token_mean,
    ppo_clip_objective,
    truncated_is_weights,
    zero_spread_groups,
)

try:
    import verl.utils.torch_functional as verl_F
    from tensordict import TensorDict
    from verl.protocol import DataProto
    from verl.trainer.config.algorithm import RolloutCorrectionConfig
    from verl.trainer.ppo import core_algos, rollout_corr_helper
    from verl.utils import tensordict_utils as tu
    from verl.workers.config import FSDPActorConfig
    from verl.workers.utils.losses import ppo_loss
except ImportError:
    core_algos = None

pytestmark = [
    pytest.mark.verl,
    pytest.mark.skipif(core_algos is None, reason="verl is not installed (tox -e verl installs it)"),
]

F64 = torch.float64
TOL = 1e-10
GROUPS, N = 4, 8
SEQS, TOKENS = GROUPS * N, 20
EPS_LOW, EPS_HIGH, CLIP_C = 0.2, 0.27, 3.0
KL_COEF = 1e-3


def _lengths(g: torch.Generator, rewards: torch.Tensor | None = None) -> torch.Tensor:
    """Response lengths [SEQS] in 0..TOKENS (one empty response); longer when the reward is high."""
    lengths = torch.randint(1, TOKENS + 1, (SEQS,), generator=g)
    if rewards is not None:
        lengths = torch.where(rewards.flatten() > 0.5, lengths, (lengths + 1) // 3)
    lengths[3] = 0
    return lengths


def _mask(lengths: torch.Tensor) -> torch.Tensor:
    """Left-aligned response mask [SEQS, TOKENS] (as verl's `response_mask`), float64."""
    return (torch.arange(TOKENS) < lengths.unsqueeze(-1)).to(F64)


def _logprobs(g: torch.Generator, spread: float = 0.6, extreme: bool = True):
    """(logp, old_logp) [SEQS, TOKENS]: old in (-4, 0), logp = old + spread * N(0, 1), so the PPO clip
    and the dual clip (ratio > 3) are both active; a few log-ratios past +-20 hit the clamp."""
    old = -4.0 * torch.rand(SEQS, TOKENS, generator=g, dtype=F64)
    delta = spread * torch.randn(SEQS, TOKENS, generator=g, dtype=F64)
    if extreme:
        delta[0, :4] = torch.tensor([25.0, -25.0, 20.5, -30.0], dtype=F64)
    return old + delta, old


def _actor_config(**overrides) -> FSDPActorConfig:
    """verl's actor config with the harness's defaults (eps 0.2 / 0.27, dual clip 3, token-mean)."""
    kw = dict(strategy="fsdp", rollout_n=N, ppo_mini_batch_size=GROUPS, ppo_micro_batch_size_per_gpu=1,
              clip_ratio_low=EPS_LOW, clip_ratio_high=EPS_HIGH, clip_ratio_c=CLIP_C, loss_agg_mode="token-mean",
              entropy_coeff=0.0)
    kw.update(overrides)
    return FSDPActorConfig(**kw)


def _vanilla(logp, old, adv, mask, config, weights=None, mode="token-mean"):
    fn = core_algos.get_policy_loss_fn("vanilla")
    assert fn is core_algos.compute_policy_loss_vanilla
    return fn(old_log_prob=old, log_prob=logp, advantages=adv, response_mask=mask, loss_agg_mode=mode, config=config,
              rollout_is_weights=weights)


def _verl_token_losses(logp, old, adv, mask, config) -> torch.Tensor:
    """verl's per-token PPO loss matrix (vanilla keeps it internal): with token-sum the loss is
    sum(mask * w * l), so its gradient in the IS weights w (here all 1) is exactly mask * l."""
    ones = torch.ones_like(logp, requires_grad=True)
    loss, _ = _vanilla(logp.detach(), old, adv, mask, config, weights=ones, mode="token-sum")
    (grad,) = torch.autograd.grad(loss, ones)
    return grad


# ----------------------------------------------------------------------------------------------
# advantages


def _rewards(g: torch.Generator, groups: int = GROUPS, n: int = N) -> torch.Tensor:
    return (torch.rand(groups, n, generator=g) < 0.4).to(F64) + 0.1 * torch.rand(groups, n, generator=g, dtype=F64)


def _verl_advantages(rewards: torch.Tensor, mask: torch.Tensor, **kw) -> torch.Tensor:
    """verl's estimator on its own inputs: the score on the last response token (as verl's reward
    managers place it), the prompt's uid as the group index."""
    groups, n = rewards.shape
    scores = torch.zeros_like(mask)
    last = (mask.sum(-1).long() - 1).clamp(min=0)
    scores[torch.arange(groups * n), last] = rewards.flatten()
    index = np.array([f"uid-{i // n}" for i in range(groups * n)], dtype=object)
    fn = core_algos.get_adv_estimator_fn("reinforce_plus_plus_baseline")
    assert fn is core_algos.compute_reinforce_plus_plus_baseline_outcome_advantage
    adv, returns = fn(token_level_rewards=scores, response_mask=mask, index=index, **kw)
    assert torch.equal(adv, returns)
    return adv


def test_token_advantages_match_reinforce_plus_plus_baseline():
    """`group_advantages(normalise="tokens")` is verl's `reinforce_plus_plus_baseline`: group-mean
    baseline, then `masked_whiten` over the response tokens (Bessel's correction, rsqrt(var + 1e-8)),
    times the mask. The one deliberate difference: verl's masked mean divides by (count + 1e-8), not
    the count T, which moves each advantage by a relative ~1e-8 / (2 T) (here ~5e-11 absolute); the
    check allows exactly that (rtol 1e-8 / T) on top of 1e-10. The estimator's own `epsilon`
    argument is unused by verl (its 1e-8 is hard-coded in `masked_whiten`), so the harness's
    eps=None (1e-8) is the only value verl has."""
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        rewards = _rewards(g)
        lengths = _lengths(g, rewards)
        mask = _mask(lengths)
        ours = group_advantages(rewards, lengths.view(GROUPS, N), normalise="tokens")
        theirs = _verl_advantages(rewards, mask)
        tokens = float(mask.sum())
        torch.testing.assert_close(theirs, ours.flatten().unsqueeze(-1) * mask, rtol=1e-8 / tokens, atol=TOL)
        assert torch.equal(_verl_advantages(rewards, mask, epsilon=0.5), theirs)  # epsilon is ignored
        assert float(ours.flatten()[3]) == 0.0  # the empty response, as verl's mask gives it


def test_singleton_group_is_the_one_unreachable_difference():
    """A prompt with a single response: verl's baseline for it is 0 (`id2mean = 0` when the group has
    one member), so its raw score is whitened; the harness subtracts the group's own mean and gives 0.
    Unreachable in the harness: dynamic sampling drops every zero-spread group, and a group of one
    has zero spread."""
    g = torch.Generator().manual_seed(7)
    rewards = _rewards(g, groups=SEQS, n=1)
    lengths = _lengths(g)
    mask = _mask(lengths)
    assert torch.all(zero_spread_groups(rewards))
    assert torch.equal(group_advantages(rewards, lengths.view(SEQS, 1)), torch.zeros(SEQS, 1, dtype=F64))
    raw = rewards.flatten().unsqueeze(-1) * mask
    expected = verl_F.masked_whiten(raw, mask) * mask
    torch.testing.assert_close(_verl_advantages(rewards, mask), expected, rtol=0, atol=TOL)


# ----------------------------------------------------------------------------------------------
# PPO-clip with decoupled bounds and dual clip


def _advantages(g: torch.Generator, per_token: bool) -> torch.Tensor:
    if per_token:
        return torch.randn(SEQS, TOKENS, generator=g, dtype=F64)
    return torch.randn(SEQS, generator=g, dtype=F64)


@pytest.mark.parametrize("per_token", [False, True], ids=["seq-advantage", "token-advantage"])
def test_ppo_clip_matches_vanilla_policy_loss(per_token):
    """`ppo_clip_objective` is verl's `compute_policy_loss_vanilla` (POLICY_LOSS "vanilla") with
    clip_ratio_low = eps_low, clip_ratio_high = eps_high, clip_ratio_c = clip_ratio_c: per token,
    as the token-mean loss, its gradient in logp, and the two clip fractions (verl's pg_clipfrac is
    the harness's `clip_frac`, pg_clipfrac_lower its `dual_clip_frac`). Both clamp the log-ratio
    to +-20 before exp (the harness's `log_ratio_clamp` default; verl's is fixed)."""
    g = torch.Generator().manual_seed(11 + per_token)
    logp, old = _logprobs(g)
    mask = _mask(_lengths(g))
    adv = _advantages(g, per_token)
    adv_grid = adv if per_token else adv.unsqueeze(-1).expand(SEQS, TOKENS)
    config = _actor_config()

    ours, clipped = ppo_clip_objective(logp, old, adv, EPS_LOW, EPS_HIGH, CLIP_C)
    torch.testing.assert_close(_verl_token_losses(logp, old, adv_grid, mask, config), ours * mask, rtol=0, atol=TOL)

    ratio = torch.exp(torch.clamp(logp - old, -20.0, 20.0))
    dual = dual_clip_active(ratio, adv_grid, CLIP_C).to(F64)
    assert float((dual * mask).sum()) > 0 and float((clipped * mask).sum()) > 0  # both clips are exercised

    a = logp.clone().requires_grad_(True)
    b = logp.clone().requires_grad_(True)
    loss_ours = masked_token_mean(ppo_clip_objective(a, old, adv, EPS_LOW, EPS_HIGH, CLIP_C)[0], mask)
    loss_verl, metrics = _vanilla(b, old, adv_grid, mask, config)
    torch.testing.assert_close(loss_verl, loss_ours, rtol=0, atol=TOL)
    loss_ours.backward()
    loss_verl.backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=TOL)
    assert float(a.grad[0, 0]) == 0.0 and float(a.grad[0, 1]) == 0.0  # past the clamp: no gradient

    tokens = float(mask.sum())
    assert metrics["actor/pg_clipfrac"] == pytest.approx(float((clipped * mask).sum()) / tokens, abs=TOL)
    assert metrics["actor/pg_clipfrac_lower"] == pytest.approx(float((dual * mask).sum()) / tokens, abs=TOL)


def test_dual_clip_off_is_a_clip_ratio_c_above_the_clamped_ratio():
    """The harness's `clip_ratio_c: null` (no dual clip) has no verl spelling (verl asserts
    clip_ratio_c > 1 and always applies it), but the clamped ratio never exceeds e^20 ~ 4.9e8, so
    any clip_ratio_c above that, e.g. 1e9, is exactly "off"."""
    g = torch.Generator().manual_seed(5)
    logp, old = _logprobs(g, spread=1.5)
    mask = _mask(_lengths(g))
    adv = _advantages(g, per_token=True)
    ours, _ = ppo_clip_objective(logp, old, adv, EPS_LOW, EPS_HIGH, clip_ratio_c=None)
    theirs = _verl_token_losses(logp, old, adv, mask, _actor_config(clip_ratio_c=1e9))
    torch.testing.assert_close(theirs, ours * mask, rtol=0, atol=TOL)
    with_dual, _ = ppo_clip_objective(logp, old, adv, EPS_LOW, EPS_HIGH, CLIP_C)
    assert not torch.allclose(with_dual * mask, ours * mask)  # the dual clip mattered on this data
    assert math.exp(20.0) < 1e9


# ----------------------------------------------------------------------------------------------
# KL penalty


@pytest.mark.parametrize(("ours", "names"), [("k2", ("mse", "k2")), ("low_var_kl", ("low_var_kl", "k3"))])
def test_kl_estimators_match_verl_kl_penalty(ours, names):
    """k2 is verl's `kl_loss_type=mse` (alias k2), low_var_kl its `low_var_kl` (alias k3), values and
    gradients, clamps included (log-ratio to +-20, k3 capped at 10). verl's "+" variants (k3+,
    low_var_kl+) keep k3's value but take k2's gradient (straight-through): not the harness's."""
    g = torch.Generator().manual_seed(3)
    logp, ref = _logprobs(g, spread=1.0)
    logp[1, :3] = ref[1, :3] + torch.tensor([-8.0, 3.0, -15.0], dtype=F64)  # k3 past its cap of 10
    a = logp.clone().requires_grad_(True)
    value = kl_penalty(a, ref, ours)
    (grad_ours,) = torch.autograd.grad(value.sum(), a)
    for name in names:
        b = logp.clone().requires_grad_(True)
        theirs = core_algos.kl_penalty(b, ref, name)
        torch.testing.assert_close(theirs, value.detach(), rtol=0, atol=TOL)
        (grad_theirs,) = torch.autograd.grad(theirs.sum(), b)
        torch.testing.assert_close(grad_theirs, grad_ours, rtol=0, atol=TOL)
    if ours == "low_var_kl":
        b = logp.clone().requires_grad_(True)
        plus = core_algos.kl_penalty(b, ref, "low_var_kl+")
        torch.testing.assert_close(plus.detach(), value.detach(), rtol=0, atol=TOL)
        (grad_plus,) = torch.autograd.grad(plus.sum(), b)
        torch.testing.assert_close(grad_plus, logp - ref, rtol=0, atol=TOL)  # k2's gradient
        assert not torch.allclose(grad_plus, grad_ours)


# ----------------------------------------------------------------------------------------------
# truncated importance sampling (ICE-POP)


def _rollout_logp(g: torch.Generator, old: torch.Tensor) -> torch.Tensor:
    """Rollout-engine logprobs: old minus a log-ratio spread over ~[-3, 3], so many tokens fall outside
    [0.5, 5] on either side; some sit exactly on log 0.5 and log 5, some past the +-20 clamp."""
    log_ratio = 1.2 * torch.randn(old.shape, generator=g, dtype=F64)
    log_ratio[2, :6] = torch.tensor([math.log(0.5), math.log(5.0), 25.0, -25.0, 0.0, math.log(5.0) + 1e-12], dtype=F64)
    return old - log_ratio


def test_icepop_is_verl_token_rollout_is_with_a_lower_upper_threshold():
    """`truncated_is_weights(old, rollout, 0.5, 5.0)` (w = exp(old - rollout), 0 outside [0.5, 5],
    the response mask untouched, so masked tokens still count in the token-mean denominator) is
    verl's decoupled-mode rollout correction with rollout_is="token", rollout_is_threshold="0.5_5.0",
    rollout_rs=None: bit for bit, bounds included, through the trainer's own entry point
    `compute_rollout_correction_and_add_to_batch`. verl's preset for it is
    `RolloutCorrectionConfig.decoupled_token_icepop()`."""
    g = torch.Generator().manual_seed(13)
    _, old = _logprobs(g, extreme=False)
    rollout = _rollout_logp(g, old)
    mask = _mask(_lengths(g))
    weights, keep = truncated_is_weights(old, rollout, 0.5, 5.0)

    config = RolloutCorrectionConfig.decoupled_token_icepop()
    assert (config.rollout_is, config.rollout_is_threshold, config.rollout_rs) == ("token", "0.5_5.0", None)
    assert not config.bypass_mode and not config.rollout_is_batch_normalize
    batch = DataProto.from_dict(tensors={"old_log_probs": old, "rollout_log_probs": rollout, "response_mask": mask.clone()})
    batch, _ = rollout_corr_helper.compute_rollout_correction_and_add_to_batch(batch, config)
    assert torch.equal(batch.batch["rollout_is_weights"], weights * mask)
    assert torch.equal(batch.batch["response_mask"], mask)  # IcePop masks by weight, not by the mask
    assert torch.equal(keep[2, 2:6], torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=F64))  # past the clamp, 1, just above 5
    assert 0 < float((keep * mask).sum()) < float(mask.sum())

    # the same by the function the preset and the config keys lead to
    direct, _ = rollout_corr_helper.compute_rollout_correction_weights(old - rollout, mask, "token", "0.5_5.0")
    assert torch.equal(direct, weights * mask)


def test_rollout_rs_token_k1_is_not_icepop():
    """verl's rejection sampling `rollout_rs=token_k1` tests -log r = rollout - old against
    [log lower, log upper]: with "0.5_5.0" it keeps exp(rollout - old) in [0.5, 5], the reciprocal of
    the harness's ratio (the harness's mask with the arguments swapped). "0.2_2.0" gives the
    harness's kept set (off the bounds, where log vs exp rounding could differ), but rs only
    rewrites `response_mask`: no weight w on the kept tokens, and the rejected tokens leave the
    token-mean denominator and (the mask is edited before the advantages) the whitening statistics.
    So no rollout_rs setting reproduces the harness; rollout_is=token with "0.5_5.0" does."""
    g = torch.Generator().manual_seed(17)
    _, old = _logprobs(g, extreme=False)
    rollout = old - 1.2 * torch.randn(old.shape, generator=g, dtype=F64)  # no token on a bound
    mask = _mask(_lengths(g))
    _, keep = truncated_is_weights(old, rollout, 0.5, 5.0)
    _, keep_swapped = truncated_is_weights(rollout, old, 0.5, 5.0)

    rs_mask, _ = rollout_corr_helper.compute_rollout_rejection_mask(old - rollout, mask, "token_k1", "0.5_5.0")
    assert torch.equal(rs_mask, keep_swapped * mask)
    assert not torch.equal(rs_mask, keep * mask)
    rs_mask, _ = rollout_corr_helper.compute_rollout_rejection_mask(old - rollout, mask, "token_k1", "0.2_2.0")
    assert torch.equal(rs_mask, keep * mask)
    assert float(rs_mask.sum()) < float(mask.sum())  # the denominator shrinks: not the harness's


# ----------------------------------------------------------------------------------------------
# the whole loss and its aggregation over micro-batches


def _ppo_loss_data(idx, lengths, old, adv, weights, ref, batch_num_tokens: int, dp_size: int, prompt_len: int = 3):
    """verl's actor-loss input for the sequences `idx`, padded (left prompt, right-padded response)."""
    mask = _mask(lengths[idx])
    attention = torch.cat([torch.ones(len(idx), prompt_len), mask.float()], dim=1).long()
    data = TensorDict({"prompts": torch.ones(len(idx), prompt_len, dtype=torch.long),
                       "responses": torch.ones(len(idx), TOKENS, dtype=torch.long), "attention_mask": attention,
                       "response_mask": mask.long(), "old_log_probs": old[idx], "advantages": adv[idx] * mask,
                       "rollout_is_weights": weights[idx] * mask, "ref_log_prob": ref[idx]},
                      batch_size=[len(idx)])
    tu.assign_non_tensor(data, dp_size=dp_size, batch_num_tokens=batch_num_tokens, global_batch_size=None)
    return data


def _unpadded(logp, idx, lengths, prompt_len: int = 3) -> torch.Tensor:
    """The model's logprob output as verl's engine hands it over, one row of prompt + response tokens
    per sequence, the response's logprobs at positions prompt_len - 1 ... (shifted by one)."""
    parts = []
    for i in idx:
        n = int(lengths[i])
        parts += [logp.new_zeros(prompt_len - 1), logp[i, :n], logp.new_zeros(1)]
    return torch.cat(parts)


@pytest.mark.parametrize("dp_size", [1, 2])
def test_mini_batch_loss_matches_verl_ppo_loss_over_uneven_micro_batches(dp_size):
    """The harness's per-mini-batch loss as `_accumulate_gradients` builds it, sum over micro-batches of
    masked_token_mean(ppo * w + kl_coef * k2, mask, num_tokens = the mini-batch's response tokens),
    is verl 0.9.1's actor loss (`verl.workers.utils.losses.ppo_loss`, the engine workers' loss:
    vanilla policy loss with the IcePop weights plus kl_loss_coef * agg_loss(kl)), accumulated over
    micro-batches of uneven size (as use_dynamic_bsz cuts them): loss and gradient.

    verl's `agg_loss` token-mean divides each micro-batch's masked sum by `batch_num_tokens`, which
    the engine's `forward_backward_batch` sets to the mini-batch's valid tokens summed over the
    data-parallel group, and multiplies by dp_size, which data parallelism's gradient averaging
    divides out again: with dp_size = 2 the mean of the two ranks' losses is the harness's loss."""
    g = torch.Generator().manual_seed(19 + dp_size)
    logp, old = _logprobs(g)
    ref = old + 0.3 * torch.randn(old.shape, generator=g, dtype=F64)
    rollout = _rollout_logp(g, old)
    lengths = _lengths(g)
    mask = _mask(lengths)
    adv = _advantages(g, per_token=False)
    weights, _ = truncated_is_weights(old, rollout, 0.5, 5.0)
    total_tokens = int(mask.sum())

    # harness: micro-batches [0:5], [5:16], [16:32] of the one mini-batch
    a = logp.clone().requires_grad_(True)
    ours = a.new_zeros(())
    for lo, hi in [(0, 5), (5, 16), (16, SEQS)]:
        pg, _ = ppo_clip_objective(a[lo:hi], old[lo:hi], adv[lo:hi], EPS_LOW, EPS_HIGH, CLIP_C)
        per_token = pg * weights[lo:hi] + KL_COEF * kl_penalty(a[lo:hi], ref[lo:hi], "k2")
        ours = ours + masked_token_mean(per_token, mask[lo:hi], num_tokens=total_tokens)
    ours.backward()

    # verl: the sequences split over dp_size ranks, each rank's share in uneven micro-batches
    b = logp.clone().requires_grad_(True)
    ranks = torch.arange(SEQS).chunk(dp_size)
    rank_losses = []
    for rank in ranks:
        config = _actor_config(use_kl_loss=True, kl_loss_coef=KL_COEF, kl_loss_type="mse")
        cuts = [0, 3, len(rank) // 2, len(rank)]
        rank_loss = b.new_zeros(())
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            idx = rank[lo:hi].tolist()
            data = _ppo_loss_data(idx, lengths, old, adv.unsqueeze(-1).expand(SEQS, TOKENS), weights, ref,
                                  total_tokens, dp_size)
            loss, _ = ppo_loss(config, {"log_probs": _unpadded(b, idx, lengths)}, data)
            rank_loss = rank_loss + loss
        rank_losses.append(rank_loss)
    theirs = torch.stack(rank_losses).mean()  # data-parallel gradient averaging
    theirs.backward()

    torch.testing.assert_close(theirs, ours.detach(), rtol=0, atol=TOL)
    torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=TOL)


def test_agg_loss_token_mean_without_a_global_count_is_per_micro_batch():
    """Called without `batch_num_tokens` (a direct call; verl 0.9.1's engines always pass it),
    verl's token-mean is the micro-batch's own token mean: on one micro-batch it is exactly
    `masked_token_mean`; averaging such means over micro-batches weighs each micro-batch equally,
    not each token, so it equals the harness's mini-batch mean only when the micro-batches hold
    equal numbers of response tokens. The test checks both and the exact formula of the gap."""
    g = torch.Generator().manual_seed(23)
    values = torch.randn(SEQS, TOKENS, generator=g, dtype=F64)
    lengths = _lengths(g)
    mask = _mask(lengths)
    torch.testing.assert_close(core_algos.agg_loss(values, mask, "token-mean"), masked_token_mean(values, mask),
                               rtol=0, atol=TOL)

    cuts = [(0, 5), (5, 16), (16, SEQS)]
    sums = [float((values[lo:hi] * mask[lo:hi]).sum()) for lo, hi in cuts]
    counts = [float(mask[lo:hi].sum()) for lo, hi in cuts]
    per_micro = sum(float(core_algos.agg_loss(values[lo:hi], mask[lo:hi], "token-mean")) for lo, hi in cuts) / len(cuts)
    harness = sum(float(masked_token_mean(values[lo:hi], mask[lo:hi], num_tokens=sum(counts))) for lo, hi in cuts)
    assert per_micro == pytest.approx(sum(s / c for s, c in zip(sums, counts)) / len(cuts), abs=TOL)
    assert harness == pytest.approx(sum(sums) / sum(counts), abs=TOL)
    assert len(set(counts)) > 1 and abs(per_micro - harness) > 1e-3

    # equal token counts per micro-batch: the two agree
    even = torch.ones(SEQS, TOKENS, dtype=F64)
    halves = [(0, SEQS // 2), (SEQS // 2, SEQS)]
    per_micro = sum(core_algos.agg_loss(values[lo:hi], even[lo:hi], "token-mean") for lo, hi in halves) / 2
    torch.testing.assert_close(per_micro, masked_token_mean(values, even), rtol=0, atol=TOL)
