"""The GRPO-family core shared by both arms: each piece a small pure function on tensors.

Shapes: `rewards` is [groups, n] (one row per prompt, one column per sample). Token tensors are
[sequences, tokens] with a 0/1 `mask` marking response tokens; padding never counts.

Recipe (ProRLv2 lineage, see ../shared/REFERENCE.md): REINFORCE++-baseline advantages, PPO-clip
with decoupled eps_low / eps_high, token-level loss aggregation, a KL penalty to a periodically
reset reference policy, optional truncated importance sampling against the rollout engine's
logprobs, and dynamic sampling that drops groups without reward spread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

KLEstimator = Literal["k2", "low_var_kl"]


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """REINFORCE++-baseline: subtract each prompt group's mean reward, then normalise the result by
    the mean and standard deviation over the whole batch. [groups, n] -> [groups, n]."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    flat = centred.flatten()
    std = flat.std(unbiased=False) if flat.numel() > 1 else flat.new_tensor(0.0)
    return (centred - flat.mean()) / (std + eps)


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO-clip loss with decoupled bounds ("clip-higher") and where clipping was active.

    ratio = exp(logp - old_logp); loss = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A).
    Outside the clip range on the side the advantage pushes towards, the loss is constant in logp:
    zero gradient. Returns (loss [seq, tok], clipped [seq, tok] as float)."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages if advantages.dim() == logp.dim() else advantages.unsqueeze(-1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    was_clipped = (clipped < unclipped).float()
    return loss, was_clipped


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
    [low, high] are masked out of the loss. Returns (weights, keep) with no gradient."""
    with torch.no_grad():
        w = torch.exp(old_logp - rollout_logp)
        keep = ((w >= low) & (w <= high)).float()
    return w * keep, keep


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each position's next-token distribution. [..., vocab] -> [...]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
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
