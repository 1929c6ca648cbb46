"""The GRPO-family core shared by both arms: each piece a small pure function on tensors.

Shapes: `rewards` is [groups, n] (one row per prompt, one column per sample). Token tensors are
[sequences, tokens] with a 0/1 `mask` marking response tokens; padding never counts.

Recipe (ProRLv2 lineage; sources in docs/trainers.md): REINFORCE++-baseline advantages (whitened
over tokens, as verl does), PPO-clip with decoupled eps_low / eps_high, dual clip and a clamped
log-ratio, token-level loss aggregation, a KL penalty to a periodically reset reference policy,
optional truncated importance sampling against the rollout engine's logprobs, and dynamic sampling
that drops groups without reward spread (docs/trainers.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

KLEstimator = Literal["k2", "low_var_kl"]


AdvNormalise = Literal["tokens", "sequences"]


def group_advantages(
    rewards: torch.Tensor,
    lengths: torch.Tensor | None = None,
    normalise: AdvNormalise = "tokens",
    eps: float | None = None,
) -> torch.Tensor:
    """REINFORCE++-baseline: subtract each prompt group's mean reward, then whiten the result over
    the whole batch. rewards [groups, n], lengths [groups, n] (response tokens) -> [groups, n].

    The batch statistics come in two conventions (config `train.adv_normalise`):
    - "tokens" (default; verl's `reinforce_plus_plus_baseline`, OpenRLHF and NeMo-RL): each
      sequence's centred reward c counts once per response token, as when the advantage is spread
      over the token grid: mean m = sum(L c) / T, variance v = sum(L (c - m)^2) / (T - 1) (Bessel's
      correction over the T = sum(L) tokens, as verl's `masked_whiten`), A = (c - m) / sqrt(v + eps)
      with eps = 1e-8 unless given (verl's). A zero-length response gets 0, as verl's mask gives
      it. Needs `lengths`.
    - "sequences" (this project's earlier rule, kept to reproduce older runs): each sequence counts
      once, population std: A = (c - mean) / (std + eps) with eps = 1e-6 unless given.
    When response length tracks reward the two differ: long responses weigh more in the token
    mean, which shifts every advantage. With equal lengths they agree up to the token rule's Bessel
    factor sqrt((T - 1) / T)."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if normalise == "sequences":
        flat = centred.flatten()
        std = flat.std(unbiased=False) if flat.numel() > 1 else flat.new_tensor(0.0)
        return (centred - flat.mean()) / (std + (1e-6 if eps is None else eps))
    if normalise != "tokens":
        raise ValueError(f"unknown advantage normalisation '{normalise}'; valid: tokens, sequences")
    if lengths is None:
        raise ValueError("normalise='tokens' needs the response lengths ([groups, n] token counts)")
    weight = torch.as_tensor(lengths, device=centred.device).to(centred.dtype)
    if weight.shape != centred.shape:
        raise ValueError(f"lengths {tuple(weight.shape)} must match rewards {tuple(centred.shape)}")
    tokens = weight.sum()
    mean = (weight * centred).sum() / tokens.clamp(min=1.0)
    var = (weight * (centred - mean).pow(2)).sum() / (tokens - 1.0).clamp(min=1.0)
    whitened = (centred - mean) * torch.rsqrt(var + (1e-8 if eps is None else eps))
    return whitened * (weight > 0).to(whitened.dtype)


def zero_spread_groups(rewards: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """Dynamic-sampling filter: True for the groups whose n rewards are all equal (no learning
    signal: all correct, all wrong, or zero spread of a continuous reward). [groups, n] -> [groups]."""
    return (rewards.max(dim=1).values - rewards.min(dim=1).values) <= tol


def masked_token_mean(values: torch.Tensor, mask: torch.Tensor, num_tokens: float | None = None) -> torch.Tensor:
    """Token-level aggregation: the sum over response tokens of the batch divided by their count.
    `num_tokens` lets micro-batches divide by the whole mini-batch's count, so gradient accumulation
    over micro-batches equals one pass over the mini-batch."""
    total = mask.sum() if num_tokens is None else values.new_tensor(float(num_tokens))
    return (values * mask).sum() / total.clamp(min=1.0)


def ppo_clip_objective(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    eps_low: float,
    eps_high: float,
    clip_ratio_c: float | None = 3.0,
    log_ratio_clamp: float = 20.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO-clip loss with decoupled bounds ("clip-higher"), dual clip and a clamped
    log-ratio, and where the ordinary clip was active.

    logp, old_logp [seq, tok]; advantages [seq, tok] or [seq]. Returns (loss [seq, tok], clipped
    [seq, tok] as float).
    ratio = exp(clamp(logp - old_logp, -log_ratio_clamp, log_ratio_clamp));
    loss = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A). Outside the clip range on
    the side the advantage pushes towards, the loss is constant in logp: zero gradient.
    Dual clip (Ye et al. 2019, arXiv 1912.09729; verl's `clip_ratio_c`, default 3): for A < 0 the
    loss above grows without bound in the ratio, so it is capped at -A * clip_ratio_c, i.e.
    min(-A * c, loss), which is active exactly where A < 0 and ratio > c; there the gradient is 0.
    `clip_ratio_c=None` turns it off (NeMo-RL's prorlv2.yaml: `ratio_clip_c: null`); otherwise it
    must exceed 1. The clamp (verl: [-20, 20]) keeps exp finite: without it a log-ratio above ~88.7
    overflows float32 to inf and the gradient to NaN; beyond the clamp the gradient is 0."""
    if clip_ratio_c is not None and clip_ratio_c <= 1.0:
        raise ValueError(f"clip_ratio_c must be > 1 (or None to disable the dual clip), got {clip_ratio_c}")
    ratio = clamped_ratio(logp, old_logp, log_ratio_clamp)
    adv = advantages if advantages.dim() == logp.dim() else advantages.unsqueeze(-1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    was_clipped = (clipped < unclipped).float()
    if clip_ratio_c is not None:
        loss = torch.where(dual_clip_active(ratio, adv, clip_ratio_c), -adv * clip_ratio_c, loss)
    return loss, was_clipped


def clamped_ratio(logp: torch.Tensor, old_logp: torch.Tensor, log_ratio_clamp: float = 20.0) -> torch.Tensor:
    """exp(clamp(logp - old_logp, -log_ratio_clamp, log_ratio_clamp)): the policy ratio, finite for
    any log-ratio (float32 exp overflows past ~88.7). Same shape in and out."""
    return torch.exp(torch.clamp(logp - old_logp, -log_ratio_clamp, log_ratio_clamp))


def dual_clip_active(ratio: torch.Tensor, advantages: torch.Tensor, clip_ratio_c: float | None) -> torch.Tensor:
    """Where the dual clip caps the PPO loss: A < 0 and ratio > clip_ratio_c (there the clipped loss
    -A * max(ratio, 1 - eps_low) exceeds -A * c, as c > 1). ratio and advantages [seq, tok] ->
    bool [seq, tok]; all False when the dual clip is off (None). verl logs this fraction as
    `actor/pg_clipfrac_lower`."""
    if clip_ratio_c is None:
        return torch.zeros_like(ratio, dtype=torch.bool)
    return (advantages < 0) & (ratio > clip_ratio_c)


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: KLEstimator = "k2") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled tokens.

    k2: 0.5 * (logp - ref_logp)^2. low_var_kl (Schulman's k3): exp(ref - logp) - (ref - logp) - 1,
    non-negative and unbiased; clamped as verl does to keep rare huge ratios finite."""
    diff = logp - ref_logp
    if estimator == "k2":
        return 0.5 * diff.pow(2)
    if estimator == "low_var_kl":
        log_ratio = (-diff).clamp(-20.0, 20.0)
        return (torch.exp(log_ratio) - log_ratio - 1.0).clamp(max=10.0)
    raise ValueError(f"unknown KL estimator '{estimator}'; valid: k2, low_var_kl")


def truncated_is_weights(
    old_logp: torch.Tensor, rollout_logp: torch.Tensor, low: float, high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance weights correcting the rollout engine's sampling distribution towards the
    trainer's (ICE-POP style): w = exp(old_logp - rollout_logp), and tokens whose w falls outside
    [low, high] are masked out of the loss. Returns (weights, keep), both [seq, tok], no gradient.
    A masked token's weight is exactly 0 even when w overflows to inf (a log-ratio past ~88.7 in
    float32): selecting with `where` avoids the NaN of inf * 0."""
    with torch.no_grad():
        w = torch.exp(old_logp - rollout_logp)
        kept = (w >= low) & (w <= high)
    return torch.where(kept, w, torch.zeros_like(w)), kept.float()


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each position's next-token distribution. [..., vocab] -> [...]."""
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def shared_prompt_micro_batches(
    members: Sequence[int],
    group: Sequence[int],
    prompt_len: Sequence[int],
    response_len: Sequence[int],
    budget: int,
) -> list[list[int]]:
    """Micro-batches for a forward that computes each prompt once per micro-batch.

    `group`, `prompt_len` and `response_len` are indexed by sequence: its prompt group, the tokens
    its group's prompt forward holds, the tokens its response forward holds. The members are taken
    in (group, response length, index) order, so each group's rows are consecutive and responses
    of similar length share a micro-batch (little padding when N=512 responses of one prompt are
    cut into slices), and packed while the padded size of the micro-batch, groups x longest prompt
    + rows x longest response, stays within `budget` tokens: a prompt counts once per micro-batch
    however many of its responses ride along. A group too large for one micro-batch is split over
    several (each recomputes its prompt); a sequence that alone exceeds the budget gets a
    micro-batch of its own."""
    out: list[list[int]] = []
    current: list[int] = []
    groups: set[int] = set()
    longest_prompt = longest_response = 0
    for i in sorted(members, key=lambda i: (group[i], response_len[i], i)):
        prompt = max(longest_prompt, prompt_len[i])
        response = max(longest_response, response_len[i])
        cost = (len(groups) + (group[i] not in groups)) * prompt + (len(current) + 1) * response
        if current and cost > budget:
            out.append(current)
            current, groups = [], set()
            prompt, response = prompt_len[i], response_len[i]
        current.append(i)
        groups.add(group[i])
        longest_prompt, longest_response = prompt, response
    if current:
        out.append(current)
    return out


def probe_mass_change(before: torch.Tensor, after: torch.Tensor) -> dict[str, float]:
    """The ΔQ_pos probe's metrics from each probe item's summed response logprob before and after
    an update ([items] each; `train.probe_every`). Q_pos of an item is exp(sum logp), the policy's
    probability of the whole reference response. Its change is exp(before) x expm1(after - before),
    exact without subtracting two masses that may be 1e-30 apart from 0, in float64. The summed
    logprob's change is the better-behaved number: the mean mass is dominated by the few items the
    policy already favours.

    The update measured is the trainer's clipped log-probability objective, not the paper's linear
    surrogate (docs/trainers.md, "Which loss's ΔQ_pos it measures").

    Returns probe_q_pos (mean mass after), probe_delta_q_pos (mean of after - before), probe_fell
    (share of items whose mass fell) and probe_logp_delta (mean change of the summed logprob)."""
    before, after = before.double(), after.double()
    delta = after - before
    return {
        "probe_q_pos": float(after.exp().mean()),
        "probe_delta_q_pos": float((before.exp() * torch.expm1(delta)).mean()),
        "probe_fell": float((delta < 0).double().mean()),
        "probe_logp_delta": float(delta.mean()),
    }
