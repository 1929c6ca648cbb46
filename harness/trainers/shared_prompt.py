"""The update's batching and forward: each prompt computed once per micro-batch.

A step's sequences share prompts (N responses each). Packing them into micro-batches under a token
budget that counts each prompt once per micro-batch, and running each prompt's responses on top of
its one key/value cache, keeps the update's cost and memory bounded in N: N=512 does not pay for
its prompts 512 times. `UpdateLayout` is the contract the loss (harness/trainers/grpo.py) is written
against; `SHARED_PROMPT` is the layout training uses; tests/test_shared_prompt.py checks it against
the plainest per-sample computation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from harness.rollout.hf import cache_argument
from harness.trainers.core import shared_prompt_micro_batches


@dataclass
class ScoredSequence:
    """One prompt + response of the step, tokenised, with what the loss needs."""

    ids: list[int]
    prompt_len: int
    group: int
    rollout_logp: list[float]
    advantage: float


@dataclass
class SharedPromptBatch:
    """One micro-batch laid out for `shared_prompt_forward` (see `pad`)."""

    prompt_ids: torch.Tensor
    """[groups, P]: each group's prompt but its last token, right-padded."""
    rows_per_prompt: list[int]
    """[groups]: the response rows continuing each `prompt_ids` row, which are consecutive."""
    input_ids: torch.Tensor
    """[rows, L]: the prompt's last token, then the response but its last token; right-padded."""
    targets: torch.Tensor
    """[rows, L]: the response tokens (the next-token targets of `input_ids`), right-padded."""
    position_ids: torch.Tensor
    """[rows, L]: RoPE positions, continuing from the row's own prompt: prompt_len - 1 + column."""
    attention_mask: torch.Tensor
    """[rows, P + L]: the keys a row may see, the padded prompt cache's columns first."""
    mask: torch.Tensor
    """[rows, L] float: 1 where `targets` holds a response token, 0 on padding."""


def micro_batches_by_prompt(seqs: list[ScoredSequence], members: list[int], budget: int) -> list[list[int]]:
    """The members grouped by prompt and packed under the token budget, each prompt counted once
    per micro-batch (`harness.trainers.core.shared_prompt_micro_batches`). One micro-batch holds several
    small groups (N=16) or a slice of one large group (N=512), so memory stays bounded in N."""
    return shared_prompt_micro_batches(
        members,
        [s.group for s in seqs],
        [s.prompt_len - 1 for s in seqs],
        [len(s.ids) - s.prompt_len for s in seqs],
        budget,
    )


def pad(seqs: list[ScoredSequence], rows: list[int], pad_id: int, device) -> SharedPromptBatch:
    """Lay out one micro-batch so each prompt is computed once and its responses continue it.

    A sequence is a prompt p[0..P-1] followed by a response r[0..L-1]; the loss needs
    log pi(r[j] | p, r[:j]) for each j. The prompt pass runs each group's p[0..P-2] once; the
    response pass runs, per row, p[P-1], r[0], ..., r[L-2] on top of that row's group's cache, so
    its logits at column j predict r[j]: the response-token logprobs come out aligned at column 0,
    whatever the prompt length.

    Padding: everything is right-padded. In the prompt pass pads come after every real token, so a
    plain causal mask is exact for the real tokens (pad positions compute values nobody reads) and
    no attention row is fully masked (left padding, as in the rollout engine, starts rows with pads
    that attend to nothing, which attention kernels treat differently, and needs positions derived
    from the mask). In the
    response pass the mask hides the padding between a row's prompt (P_g - 1 tokens) and the
    padded prompt width; the response segment itself is all ones, since its right padding comes
    after every real token and causality already hides it. Position ids continue from the row's
    own prompt (P_g - 1 + column), not from the padded width, so RoPE sees exactly the positions
    of the per-sample sequence."""
    runs = [(g, len(list(run))) for g, run in itertools.groupby(seqs[i].group for i in rows)]
    groups = [g for g, _ in runs]
    if len(set(groups)) != len(groups):
        raise ValueError("a micro-batch's rows must hold each group's responses consecutively (see micro_batches_by_prompt)")
    slot = {g: k for k, g in enumerate(groups)}
    prompts: dict[int, list[int]] = {}
    for i in rows:
        prompts.setdefault(seqs[i].group, seqs[i].ids[: seqs[i].prompt_len - 1])
    prompt_width = max(len(p) for p in prompts.values())
    width = max(1, max(len(seqs[i].ids) - seqs[i].prompt_len for i in rows))
    prompt_ids = torch.full((len(groups), prompt_width), pad_id, dtype=torch.long)
    for g, k in slot.items():
        prompt_ids[k, : len(prompts[g])] = torch.tensor(prompts[g], dtype=torch.long)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.ones((len(rows), prompt_width + width), dtype=torch.long)
    mask = torch.zeros((len(rows), width))
    starts = torch.tensor([seqs[i].prompt_len - 1 for i in rows], dtype=torch.long)
    for r, i in enumerate(rows):
        s = seqs[i]
        n = len(s.ids) - s.prompt_len
        input_ids[r, :n] = torch.tensor(s.ids[s.prompt_len - 1: -1], dtype=torch.long)
        targets[r, :n] = torch.tensor(s.ids[s.prompt_len:], dtype=torch.long)
        attention[r, len(prompts[s.group]): prompt_width] = 0
        mask[r, :n] = 1.0
    return SharedPromptBatch(
        prompt_ids=prompt_ids.to(device),
        rows_per_prompt=[count for _, count in runs],
        input_ids=input_ids.to(device),
        targets=targets.to(device),
        position_ids=(starts.unsqueeze(-1) + torch.arange(width)).to(device),
        attention_mask=attention.to(device),
        mask=mask.to(device),
    )


def shared_prompt_forward(model, seqs: list[ScoredSequence], rows: list[int], pad_id: int, temperature: float):
    """Response-aligned (logits [rows, L, vocab] / temperature, targets [rows, L], mask [rows, L]).

    The prompt pass fills a `DynamicCache` with each group's keys/values once; `repeat_prompts`
    copies them to the group's response rows (as the rollout engine does for its N samples), and
    the response pass attends to them. The copies keep their autograd history, so the backward
    sums the gradients of all of a group's rows into its one prompt pass: the same gradient as
    recomputing the prompt per sample."""
    batch = pad(seqs, rows, pad_id, model.device)
    cache = None
    if batch.prompt_ids.shape[1]:
        cache = DynamicCache(config=model.config)
        model(input_ids=batch.prompt_ids, **{cache_argument(model): cache}, use_cache=True, logits_to_keep=1)
        repeat_prompts(cache, batch.rows_per_prompt)
    logits = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        **{cache_argument(model): cache},
        use_cache=cache is not None,
    ).logits
    return logits.float() / temperature, batch.targets, batch.mask


def repeat_prompts(cache: DynamicCache, counts: list[int]) -> None:
    """Batch row k of every layer's keys/values repeated counts[k] times, in order.

    Built from expand + cat, whose backward is a plain sum per prompt: bitwise reproducible. The
    rollout engine's `batch_select_indices` (an index select) would do in inference, but on a CPU
    with several threads its backward adds into each prompt with parallel atomics, so two
    identical runs differ in the last bits (and the resume test compares weights bitwise)."""
    for layer in cache.layers:
        for name in ("keys", "values"):
            states = getattr(layer, name)
            setattr(layer, name, torch.cat([states[k: k + 1].expand(c, *states.shape[1:]) for k, c in enumerate(counts)]))


@dataclass(frozen=True)
class UpdateLayout:
    """How the update cuts sequences into micro-batches and computes their response logits.

    `micro_batches(seqs, members, budget)` -> lists of sequence indices;
    `forward(model, seqs, rows, pad_id, temperature)` -> response-aligned (logits, targets, mask),
    response token j of row r at [r, j]. The loss is written once against this contract."""

    micro_batches: Callable[[list[ScoredSequence], list[int], int], list[list[int]]]
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


SHARED_PROMPT = UpdateLayout(micro_batches=micro_batches_by_prompt, forward=shared_prompt_forward)
"""The layout training uses: each prompt computed once per micro-batch."""
