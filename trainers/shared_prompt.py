"""The update's batching and forward: each prompt computed once per micro-batch.

A step's sequences share prompts (N responses each). Packing them into micro-batches under a token
budget that counts each prompt once per micro-batch, and running each prompt's responses on top of
its one key/value cache, keeps the update's cost and memory bounded in N: N=512 does not pay for
its prompts 512 times. `UpdateLayout` is the contract the loss (trainers/grpo.py) is written
against; `SHARED_PROMPT` is the layout training uses; tests/test_shared_prompt.py checks it against
the plainest per-sample computation. The forward stops at the body's final hidden states: the loss
applies the output layer in chunks (trainers/logits.py), so [tokens x vocabulary] logits
never exist at once. It stays exact under activation checkpointing (`shared_prompt_forward`).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache, DynamicLayer
from transformers.modeling_layers import GradientCheckpointingLayer

from harness.rollout.hf import cache_argument
from trainers.core import shared_prompt_micro_batches


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
    per micro-batch (`trainers.core.shared_prompt_micro_batches`). One micro-batch holds several
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


def shared_prompt_forward(model, seqs: list[ScoredSequence], rows: list[int], pad_id: int):
    """Response-aligned (hidden [rows, L, hidden], targets [rows, L], mask [rows, L]): the final
    hidden states of the model's body (before lm_head, which trainers/logits.py applies in
    chunks), response token j of row r predicted at [r, j].

    The prompt pass fills a cache with each group's keys/values once; `repeat_prompts` copies them
    to the group's response rows (as the rollout engine does for its N samples), and the response
    pass attends to them. The copies keep their autograd history, so the backward sums the
    gradients of all of a group's rows into its one prompt pass: the same gradient as recomputing
    the prompt per sample.

    Under activation checkpointing (`enable_gradient_checkpointing`) the backward replays each
    block's forward, cache update included. transformers therefore drops the cache of a
    checkpointed block unless it is marked safe to replay, which would silently cut the responses
    off their prompt. Both caches here are replay-safe (`_PrefixLayer`: the prompt pass's layer
    is set, not appended to; the response pass's returns prefix + its own keys without storing
    them), so the blocks are marked for the duration of the two passes (`_keep_caches`)."""
    batch = pad(seqs, rows, pad_id, model.device)
    body = model.base_model
    cache = None
    if batch.prompt_ids.shape[1]:
        prompt_cache = Cache(layers=[_PrefixLayer() for _ in range(_full_attention_layers(model))])
        with _keep_caches(model):
            body(input_ids=batch.prompt_ids, **{cache_argument(body): prompt_cache}, use_cache=False)
        cache = repeat_prompts(prompt_cache, batch.rows_per_prompt)
    with _keep_caches(model):
        hidden = body(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            **{cache_argument(body): cache},
            use_cache=False,
        ).last_hidden_state
    return hidden, batch.targets, batch.mask


def repeat_prompts(cache: Cache, counts: list[int]) -> Cache:
    """The response pass's cache: batch row k of every layer's prompt keys/values repeated counts[k]
    times, in order, as each layer's fixed prefix.

    Built from expand + cat, whose backward is a plain sum per prompt: bitwise reproducible. The
    rollout engine's `batch_select_indices` (an index select) would do in inference, but on a CPU
    with several threads its backward adds into each prompt with parallel atomics, so two
    identical runs differ in the last bits (and the resume test compares weights bitwise)."""
    def repeat(states: torch.Tensor) -> torch.Tensor:
        return torch.cat([states[k: k + 1].expand(c, *states.shape[1:]) for k, c in enumerate(counts)])

    return Cache(layers=[_PrefixLayer(repeat(layer.keys), repeat(layer.values)) for layer in cache.layers])


class _PrefixLayer(DynamicLayer):
    """One layer's keys/values whose `update` gives the same result however often it runs on the
    same states, so a checkpointed block may replay it in the backward.

    Without a prefix (the prompt pass, which calls it once on an empty cache): stores the states
    and returns them; a replay stores the recomputed (equal) states again instead of appending.
    With a prefix (the response pass): returns prefix + states and stores nothing, so the cache
    keeps its length and a replay sees the same prefix. Either way what attention gets equals what
    a `DynamicLayer` (which appends) gives on its first call."""

    def __init__(self, keys: torch.Tensor | None = None, values: torch.Tensor | None = None):
        super().__init__()
        self.prefix = None
        if keys is not None:
            self.lazy_initialization(keys, values)
            self.keys, self.values, self.prefix = keys, values, (keys, values)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if self.prefix is None:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            self.keys, self.values = key_states, value_states
            return key_states, value_states
        keys, values = self.prefix
        return torch.cat([keys, key_states], dim=-2), torch.cat([values, value_states], dim=-2)


def _full_attention_layers(model) -> int:
    """The model's number of blocks; refuses sliding-window or other non-full attention layers,
    whose caches keep a window, not the whole prompt."""
    config = model.config
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"}:
        raise ValueError(f"the shared-prompt forward needs full attention in every layer, not {sorted(kinds)}")
    return config.num_hidden_layers


@contextlib.contextmanager
def _keep_caches(model):
    """Marks the model's checkpointed blocks as safe to checkpoint with a cache (transformers'
    `_can_checkpoint_with_cache`) while the shared-prompt forward runs; restored afterwards. The flag
    is read when a block's forward starts, so the backward's replay keeps the cache too. Without
    checkpointing there is nothing to mark."""
    blocks = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    before = [vars(m).get("_can_checkpoint_with_cache") for m in blocks]
    for m in blocks:
        m._can_checkpoint_with_cache = True
    try:
        yield
    finally:
        for m, value in zip(blocks, before):
            if value is None:
                del m._can_checkpoint_with_cache
            else:
                m._can_checkpoint_with_cache = value


def enable_gradient_checkpointing(model) -> None:
    """Activation checkpointing of the model's blocks (`train.gradient_checkpointing`), non-reentrant,
    as the update's forwards expect. It acts only in a grad-enabled forward of a model in train
    mode: generation and the logprob passes (no gradients) run as before."""
    if not hasattr(GradientCheckpointingLayer, "_can_checkpoint_with_cache"):
        raise ValueError("train.gradient_checkpointing: this transformers version cannot keep a key/value cache "
                         "under checkpointing (no GradientCheckpointingLayer._can_checkpoint_with_cache), which the "
                         "shared-prompt forward needs; use transformers 5.24 or turn it off")
    options = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.24's name; the old one warns there
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)


@dataclass(frozen=True)
class UpdateLayout:
    """How the update cuts sequences into micro-batches and runs the model's body over them.

    `micro_batches(seqs, members, budget)` -> lists of sequence indices;
    `forward(model, seqs, rows, pad_id)` -> response-aligned (hidden, targets, mask): the body's
    final hidden states [rows, L, hidden] (before lm_head) whose position [r, j] predicts response
    token j of row r, that token [rows, L] and a 0/1 mask [rows, L]. The loss is written once
    against this contract and applies the output layer itself, in chunks
    (trainers/logits.py), so no forward ever holds [tokens x vocabulary] logits."""

    micro_batches: Callable[[list[ScoredSequence], list[int], int], list[list[int]]]
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


SHARED_PROMPT = UpdateLayout(micro_batches=micro_batches_by_prompt, forward=shared_prompt_forward)
"""The layout training uses: each prompt computed once per micro-batch."""
