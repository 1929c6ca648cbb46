"""`hf` rollout engine: transformers model in-process; each prompt is prefilled once and its keys
and values are stored once for all its N samples.

How a call runs:
1. Prompts are split into chunks whose samples fit `max_batch_sequences` (a prompt whose n alone
   exceeds it gets a chunk of its own).
2. Each chunk's prompts are left-padded and prefilled in ONE forward pass (the model's own
   attention). No prompt is ever recomputed.
3. Rows are decoded together, one token per forward pass for all of them, with shared-prefix
   attention: each prompt's prefilled keys/values are kept once (padding masked), never copied to
   its rows. At every step the queries of all rows of a prompt attend to that prefix in one batched
   matmul, each row attends to its own generated suffix (a buffer allocated ahead and written in
   place, doubled when full), and the two halves are merged exactly by their log-sum-exp
   (`shared_prefix_attention`).
   The model is not forked: the decode forward runs with an attention function registered in
   transformers' `AttentionInterface`, which receives each layer's new (rotated) key and value.
   Rows sit in a [prompts, rows per prompt] grid; a row that stops (a stop token, or
   max_new_tokens) is masked at once and the grid is repacked without the stopped rows when the
   live rows have fallen by a quarter (`_decode_shared` says why), so later steps pay mostly for
   live rows. Tokens and logprobs go into tensors of [rows, max_new_tokens], turned into lists once at
   the end. When n exceeds `max_batch_sequences`, the rows of one prefill are decoded in several
   row batches, all reading the same stored prefix.
   A model whose attention does not go through that interface, or needs what the function does not
   do (sliding windows that bite, soft-capping, attention sinks, a mask of its own), is decoded the
   former way, with a warning: its prefilled cache index-selected (copied) to each row, grown by
   concatenation, stopped rows dropped at every step (`shared_prefix=False` forces it; the tests
   compare both on one model).
4. Randomness is per sample, not per batch: sample j of prompt i draws its token at each step from
   a counter-based stream keyed by (seed, first_prompt_index + i, j), so how prompts are chunked
   and rows batched (`max_batch_sequences`, prompts per call) does not change a sample's random
   numbers (samples are identical up to floating-point differences in the logits).

What it leaves out compared with vLLM: no paged attention, no continuous batching across calls,
no CUDA graphs, no fused kernels (the decode step is plain PyTorch around the model's layers). It
is the reference engine for CPUs and tests, and the fallback on GPUs.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import time
import warnings
from typing import Sequence

import numpy as np
import torch
from transformers import AttentionInterface, DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from harness.checkpoint import at_least_float32, float64_throughout
from harness.rollout.base import Group, RolloutResult, Sample, SamplingParams, model_stop_ids


class HFRolloutEngine:
    """Prefix-shared batched sampling on a transformers causal LM."""

    name = "hf"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_batch_sequences: int = 1024,
        dtype: torch.dtype | None = None,
        shared_prefix: bool = True,
    ):
        """Generates from `model` itself, or, when `dtype` differs from the model's, from its own
        copy in `dtype` (which `sync_weights` refreshes). `shared_prefix=False` decodes the former
        way (each prompt's cache copied to its rows and grown by concatenation): the reference the
        shared-prefix decoding is tested against, and what a model it cannot serve gets anyway."""
        if max_batch_sequences < 1:
            raise ValueError(f"max_batch_sequences must be >= 1, got {max_batch_sequences}")
        self.model = model if dtype is None or dtype == model.dtype else _generation_copy(model, dtype)
        self.tokenizer = tokenizer
        self.max_batch_sequences = max_batch_sequences
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.shared_prefix = shared_prefix
        """Whether decoding shares each prompt's keys/values; turned off (with a warning) the first
        time the model turns out not to route its attention through the registered function."""

    def default_stop_ids(self) -> tuple[int, ...]:
        """The model's EOS tokens (generation config first, then the tokenizer)."""
        return model_stop_ids(self.model, self.tokenizer)

    def sync_weights(self, model) -> None:
        """Its own copy (if any) takes `model`'s weights, cast to its precision; no-op otherwise."""
        if self.model is not model:
            with torch.no_grad():
                self.model.load_state_dict(model.state_dict())

    def release(self) -> None:
        """Nothing to free: the engine holds no memory between calls."""

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], n: int, sampling: SamplingParams) -> RolloutResult:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        start = time.perf_counter()
        stop_ids = sampling.stop_token_ids if sampling.stop_token_ids is not None else self.default_stop_ids()
        prompt_ids = [
            self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts
        ]
        for p, ids in zip(prompts, prompt_ids):
            if not ids:
                raise ValueError(f"prompt {p!r} tokenises to nothing")
        groups = [Group(prompt=p, prompt_ids=list(ids)) for p, ids in zip(prompts, prompt_ids)]
        seed = sampling.seed
        if seed is None and sampling.temperature > 0:  # unseeded calls vary, and follow torch.manual_seed
            seed = int(torch.randint(0, 2**63 - 1, (1,)).item())

        was_training = self.model.training
        self.model.eval()
        try:
            for chunk in _plan_chunks(len(prompts), n, self.max_batch_sequences):
                first = np.array(chunk) + sampling.first_prompt_index  # prompt indices in the caller's list
                keys = row_keys(seed if seed is not None else 0, np.repeat(first, n), np.tile(np.arange(n), len(chunk)))
                self._run_chunk([prompt_ids[i] for i in chunk], [groups[i] for i in chunk], n, sampling, stop_ids, keys)
        finally:
            self.model.train(was_training)
        return RolloutResult(groups=groups, generation_s=time.perf_counter() - start)

    # ------------------------------------------------------------------------------------------

    def _run_chunk(self, prompt_ids, groups, n, sampling, stop_ids, keys):
        """Prefill a chunk's prompts once and decode their n samples each; `keys` are the rows'
        randomness keys, prompt-major (row_keys)."""
        device = self.model.device
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.full((len(prompt_ids), width), self.pad_id, dtype=torch.long, device=device)
        mask = torch.zeros((len(prompt_ids), width), dtype=torch.long, device=device)
        for row, ids in enumerate(prompt_ids):
            input_ids[row, width - len(ids):] = torch.tensor(ids, device=device)
            mask[row, width - len(ids):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        prefill_cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            **{cache_argument(self.model): prefill_cache},
            use_cache=True,
            logits_to_keep=1,
        )
        last_logits = at_least_float32(out.logits[:, -1, :])
        last_pos = positions[:, -1]

        row_prompt = torch.arange(len(prompt_ids), device=device).repeat_interleave(n)  # prompt-major
        prefix = self._shared_prefix_of(prefill_cache, mask)
        single_batch = len(row_prompt) <= self.max_batch_sequences
        for start in range(0, len(row_prompt), self.max_batch_sequences):
            idx = row_prompt[start:start + self.max_batch_sequences]
            batch_keys = keys[start:start + self.max_batch_sequences]
            samples = None
            if prefix is not None:
                try:
                    samples = self._decode_shared(prefix, idx, last_logits[idx], last_pos[idx], sampling, stop_ids, batch_keys)
                except _SharedPrefixUnsupported as exc:  # nothing was kept: this batch decodes the former way
                    self._give_up_shared_prefix(str(exc))
                    prefix = None
            if samples is None:
                # Index-select copies each prompt's cache to its sample rows; the prefill is reused
                # as is when one row batch covers the chunk, else each row batch starts from a copy.
                cache = prefill_cache if single_batch else copy.deepcopy(prefill_cache)
                cache.batch_select_indices(idx)
                samples = self._decode(cache, last_logits[idx], mask[idx], last_pos[idx], sampling, stop_ids, batch_keys)
            for prompt_index, sample in zip(idx.tolist(), samples):
                groups[prompt_index].samples.append(sample)

    def _shared_prefix_of(self, prefill_cache, mask) -> _Prefix | None:
        """The chunk's stored prefix for shared-prefix decoding; None when it is off or cannot serve
        this model (then turned off, with a warning)."""
        if not self.shared_prefix:
            return None
        try:
            if not getattr(self.model, "_can_set_attn_implementation", lambda: True)():
                raise _SharedPrefixUnsupported("its attention does not go through transformers' AttentionInterface")
            return _Prefix.of(prefill_cache, mask.bool())
        except _SharedPrefixUnsupported as exc:
            self._give_up_shared_prefix(str(exc))
            return None

    def _give_up_shared_prefix(self, reason: str) -> None:
        self.shared_prefix = False
        warnings.warn(f"hf engine: {type(self.model).__name__} is decoded without shared-prefix attention "
                      f"(slower at large n): {reason}", stacklevel=3)

    def _decode_shared(self, prefix, row_prompt, logits, last_pos, sampling, stop_ids, keys) -> list[Sample]:
        """Decode a batch of rows with shared-prefix attention; return their samples in row order.

        `row_prompt` is each row's prompt in `prefix` (prompt-major), `logits` and `last_pos` the
        rows' prefill logits and last prompt positions, `keys` their randomness keys (row_keys).

        Per step there is no Python work per row: tokens, logprobs, lengths and stop flags are
        written into tensors of [rows (+1 discard row), max_new_tokens] by index, and turned into
        lists once at the end; one host sync per step (the live count) decides early exit and
        repacking.

        The rows sit in a [prompts, slots per prompt] grid, flattened prompt-major, because the
        prefix attention takes all slots of a prompt as one matrix. A row that stops is masked at
        once: its slot keeps decoding but writes into the discard row. The grid is repacked
        without the stopped rows (prompts with no live row leave; the slots per prompt become the
        largest live count) only once the live rows have fallen to 3/4 of their count at the
        previous repack (or attempt). A repack copies every kept row's suffix keys/values, so
        repacking at every stop would copy the whole suffix cache once per step in the worst case
        (a row or two stopping each step), the very cost this path removes; with the 3/4 rule a
        batch repacks O(log rows) times, and in between the masked slots cost at most a third on
        top of the live rows (plus the slots that pad prompts with fewer live rows than the
        fullest one).
        """
        device = logits.device
        rows, steps = logits.shape[0], sampling.max_new_tokens
        discard = rows  # the row that masked slots write into
        tokens = torch.zeros((rows + 1, steps), dtype=torch.long, device=device)
        logps = torch.zeros((rows + 1, steps), dtype=logits.dtype, device=device)
        lengths = torch.zeros(rows + 1, dtype=torch.long, device=device)
        stopped = torch.zeros(rows + 1, dtype=torch.bool, device=device)
        stop = torch.tensor(stop_ids, device=device, dtype=torch.long)

        src, pad, prompts, slots_per_prompt = _pack(row_prompt)
        slot_row = torch.where(pad, discard, src)
        state = _SharedPrefixState(prefix.select(prompts), slots_per_prompt, steps)
        logits, pos, slot_keys = logits[src], last_pos[src], keys[src.cpu().numpy()]
        repack_below = 3 * rows // 4
        with _attention_implementation(self.model, _ATTENTION_NAME):
            for step in range(steps):
                uniforms = None
                if sampling.temperature > 0:
                    uniforms = torch.from_numpy(row_uniforms(slot_keys, step)).to(device)
                next_tok, next_logp = _sample(logits, sampling, uniforms)
                tokens[slot_row, step] = next_tok
                logps[slot_row, step] = next_logp
                lengths[slot_row] = step + 1
                finished = torch.isin(next_tok, stop) if len(stop_ids) else torch.zeros_like(next_tok, dtype=torch.bool)
                stopped[slot_row] = finished
                if step == steps - 1:
                    break
                if len(stop_ids):
                    slot_row = torch.where(finished, discard, slot_row)
                    live = int((slot_row < discard).sum())
                    if live == 0:
                        break
                    if live <= repack_below:
                        kept = (slot_row < discard).nonzero().squeeze(-1)
                        src, pad, prompts, slots_per_prompt = _pack(torch.div(kept, state.slots_per_prompt, rounding_mode="floor"))
                        if pad.numel() < slot_row.numel():
                            chosen = kept[src]
                            state.select(chosen, prompts, slots_per_prompt)
                            slot_row = torch.where(pad, discard, slot_row[chosen])
                            next_tok, pos = next_tok[chosen], pos[chosen]
                            slot_keys = slot_keys[chosen.cpu().numpy()]
                        repack_below = 3 * live // 4
                state.begin_step(step)
                out = self.model(
                    input_ids=next_tok.unsqueeze(-1),
                    position_ids=(pos + step + 1).unsqueeze(-1),
                    use_cache=False,
                    **{_STATE_ARGUMENT: state},
                )
                state.check_step()
                logits = at_least_float32(out.logits[:, -1, :])
        return self._samples(tokens[:rows].tolist(), logps[:rows].tolist(), lengths[:rows].tolist(),
                             stopped[:rows].tolist(), stop_ids)

    def _samples(self, tokens, logps, lengths, stopped, stop_ids) -> list[Sample]:
        stop_set = set(stop_ids)
        out = []
        for toks, lp, length, stop in zip(tokens, logps, lengths, stopped):
            toks, lp = toks[:length], lp[:length]
            out.append(Sample(
                token_ids=toks,
                text=self.tokenizer.decode(toks[:-1] if toks and toks[-1] in stop_set else toks, skip_special_tokens=True),
                logprobs=lp,
                finish_reason="stop" if stop else "length",
            ))
        return out

    def _decode(self, cache, logits, mask, last_pos, sampling, stop_ids, keys) -> list[Sample]:
        """The former decoding (`shared_prefix=False`, and the fallback): a batch of rows, each with
        its own copy of its prompt's prefilled cache, grown by concatenation, stopped rows dropped
        at every step; return their samples in row order. `keys` holds each row's randomness key
        (row_keys)."""
        device = logits.device
        rows = logits.shape[0]
        tokens: list[list[int]] = [[] for _ in range(rows)]
        logps: list[list[float]] = [[] for _ in range(rows)]
        reasons: list[str] = ["length"] * rows
        alive = torch.arange(rows, device=device)  # original row index of each live row
        stop = torch.tensor(stop_ids, device=device, dtype=torch.long)
        pos = last_pos.clone()
        for step in range(sampling.max_new_tokens):
            uniforms = None
            if sampling.temperature > 0:
                uniforms = torch.from_numpy(row_uniforms(keys, step)).to(device)
            next_tok, next_logp = _sample(logits, sampling, uniforms)
            finished = torch.isin(next_tok, stop) if len(stop_ids) else torch.zeros_like(next_tok, dtype=torch.bool)
            for r, t, lp in zip(alive.tolist(), next_tok.tolist(), next_logp.tolist()):
                tokens[r].append(t)
                logps[r].append(lp)
            for r in alive[finished].tolist():
                reasons[r] = "stop"
            if step == sampling.max_new_tokens - 1:
                break
            keep = ~finished
            if not bool(keep.any()):
                break
            if not bool(keep.all()):
                keep_idx = keep.nonzero().squeeze(-1)
                cache.batch_select_indices(keep_idx)
                keys = keys[keep_idx.cpu().numpy()]  # each live row keeps its own key
                alive, mask, pos, next_tok = alive[keep_idx], mask[keep_idx], pos[keep_idx], next_tok[keep_idx]
            pos = pos + 1
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            out = self.model(
                input_ids=next_tok.unsqueeze(-1),
                attention_mask=mask,
                position_ids=pos.unsqueeze(-1),
                **{cache_argument(self.model): cache},
                use_cache=True,
            )
            logits = at_least_float32(out.logits[:, -1, :])
        stop_set = set(stop_ids)
        return [
            Sample(
                token_ids=toks,
                text=self.tokenizer.decode(
                    toks[:-1] if toks and toks[-1] in stop_set else toks, skip_special_tokens=True
                ),
                logprobs=lp,
                finish_reason=reason,  # type: ignore[arg-type]
            )
            for toks, lp, reason in zip(tokens, logps, reasons)
        ]


# ---- shared-prefix decoding -------------------------------------------------------------------

_ATTENTION_NAME = "harness_shared_prefix"
"""The name the shared-prefix attention function is registered under in transformers'
AttentionInterface; the model is switched to it for the decode forwards only."""

_STATE_ARGUMENT = "harness_shared_prefix_state"
"""The forward keyword that carries a `_SharedPrefixState` to the attention function: transformers
passes unknown keywords of the model's forward down to each layer's attention function."""

_INERT_ARGUMENTS = frozenset({"position_ids", "use_cache", "is_causal", "output_attentions"})
"""Keywords the standard attention modules pass that do not change a one-token attention; any
other keyword with a value (position_bias, softcap, s_aux, ...) means the function cannot serve."""


class _SharedPrefixUnsupported(Exception):
    """The model needs something shared-prefix decoding does not do; decode it the former way."""


class _Prefix:
    """A chunk's prompt keys/values, once per prompt: per layer [prompts, kv_heads, width, head_dim],
    left padding zeroed (so a masked score is finite before masking and its value adds nothing),
    and `valid` [prompts, width], True on the prompt's own tokens."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], valid: torch.Tensor):
        self.keys, self.values, self.valid = keys, values, valid

    @classmethod
    def of(cls, cache: DynamicCache, valid: torch.Tensor) -> _Prefix:
        """From a prefill's cache (not modified: the former path may still need it) and its
        attention mask. Only plain full-attention layers qualify (a sliding-window or quantized
        layer keeps other state)."""
        if not cache.layers or any(type(layer) is not DynamicLayer or not layer.is_initialized for layer in cache.layers):
            raise _SharedPrefixUnsupported("its cache has layers other than full attention")
        if len({(layer.keys.shape, layer.values.shape, layer.keys.dtype) for layer in cache.layers}) != 1:
            raise _SharedPrefixUnsupported("its layers differ in key/value shape")
        keep = valid[:, None, :, None]
        return cls([torch.where(keep, layer.keys, 0) for layer in cache.layers],
                   [torch.where(keep, layer.values, 0) for layer in cache.layers], valid)

    def select(self, prompts: torch.Tensor) -> _Prefix:
        """The prefix of `prompts` (sorted indices); itself when they are all of them."""
        if prompts.numel() == self.valid.shape[0]:
            return self
        return _Prefix([k[prompts] for k in self.keys], [v[prompts] for v in self.values], self.valid[prompts])


class _SharedPrefixState:
    """What the attention function needs during one row batch's decoding: the batch's prompts'
    `_Prefix`, and each slot's suffix keys/values per layer in a buffer [slots, kv_heads, capacity,
    head_dim] written in place at the current step.

    The buffer starts at min(max_new_tokens, 128) positions and doubles (up to max_new_tokens) when
    full: a call with max_new_tokens=8192 whose samples stop at a few hundred tokens does not hold
    8192 positions per row, and a sample still sees its cache copied O(log length) times rather
    than once per token (DynamicCache's concatenation)."""

    INITIAL_CAPACITY = 128

    def __init__(self, prefix: _Prefix, slots_per_prompt: int, max_new_tokens: int):
        self.prefix = prefix
        self.slots_per_prompt = slots_per_prompt
        self.max_new_tokens = max_new_tokens
        self.num_layers = len(prefix.keys)
        self.bias = prefix_bias_of(prefix.valid, prefix.keys[0].shape[1], prefix.keys[0].dtype)
        self.suffix_keys: list[torch.Tensor | None] = [None] * self.num_layers
        self.suffix_values: list[torch.Tensor | None] = [None] * self.num_layers
        self.step = 0
        self.attended = 0

    @property
    def longest(self) -> int:
        """The most positions a row can attend to (prefix width + new tokens)."""
        return self.prefix.valid.shape[1] + self.max_new_tokens

    def begin_step(self, step: int) -> None:
        """The next forward writes position `step` of every slot's suffix."""
        self.step, self.attended = step, 0

    def check_step(self) -> None:
        """After a forward: every layer went through the attention function, once (a model that
        computes attention its own way left the state untouched, and its output is meaningless)."""
        if self.attended != self.num_layers:
            raise _SharedPrefixUnsupported(f"{self.attended} of its {self.num_layers} attention layers went through "
                                           "transformers' AttentionInterface")

    def select(self, slots: torch.Tensor, prompts: torch.Tensor, slots_per_prompt: int) -> None:
        """Repack: keep `slots` (new slot i is old slot slots[i]) and the prefixes of `prompts`."""
        self.prefix = self.prefix.select(prompts)
        self.bias = prefix_bias_of(self.prefix.valid, self.prefix.keys[0].shape[1], self.prefix.keys[0].dtype)
        self.slots_per_prompt = slots_per_prompt
        for layer in range(self.num_layers):
            if self.suffix_keys[layer] is not None:
                self.suffix_keys[layer] = self.suffix_keys[layer][slots]
                self.suffix_values[layer] = self.suffix_values[layer][slots]

    def attend(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float) -> torch.Tensor:
        """Store this step's key/value [slots, kv_heads, 1, head_dim] and attend; [slots, 1, heads, head_dim]."""
        if not 0 <= layer < self.num_layers:
            raise _SharedPrefixUnsupported(f"an attention layer has index {layer}, its cache {self.num_layers} layers")
        self.attended += 1
        keys, values = self.suffix_keys[layer], self.suffix_values[layer]
        t = self.step
        if keys is None or t >= keys.shape[2]:
            capacity = min(self.max_new_tokens, self.INITIAL_CAPACITY if keys is None else 2 * keys.shape[2])
            grown_k = key.new_empty((key.shape[0], key.shape[1], max(capacity, t + 1), key.shape[3]))
            grown_v = value.new_empty(grown_k.shape)
            if keys is not None:
                grown_k[:, :, :t] = keys[:, :, :t]
                grown_v[:, :, :t] = values[:, :, :t]
            self.suffix_keys[layer], self.suffix_values[layer] = keys, values = grown_k, grown_v
        keys[:, :, t] = key[:, :, 0]
        values[:, :, t] = value[:, :, 0]
        return shared_prefix_attention(query, self.prefix.keys[layer], self.prefix.values[layer], self.bias,
                                       keys[:, :, :t + 1], values[:, :, :t + 1], scaling)


def shared_prefix_attention(query: torch.Tensor, prefix_keys: torch.Tensor, prefix_values: torch.Tensor,
                            prefix_bias: torch.Tensor, suffix_keys: torch.Tensor, suffix_values: torch.Tensor,
                            scaling: float) -> torch.Tensor:
    """One decode step's attention for rows that share their prompt's keys/values.

    query [prompts * m, heads, 1, d]: m rows per prompt, prompt-major; prefix_keys/values
    [prompts, kv_heads, width, d]; prefix_bias [prompts * kv_heads, 1, width] (or broadcastable
    to it), 0 on a prompt's tokens and -inf on its padding (`prefix_bias_of`); suffix_keys/values
    [prompts * m, kv_heads, t, d], each row's own generated tokens (t >= 1). Query head h reads kv
    head h // (heads // kv_heads), as repeat_kv has it. Returns [prompts * m, 1, heads, d], the
    layout transformers' attention functions return.

    (a) Prefix: the queries of a prompt's m rows and of the heads/kv_heads query heads of one kv
    head form one [m * heads/kv_heads, d] matrix against that prompt's single copy: one batched
    matmul (mask and scale folded in) for the batch. (b) Suffix: each row against its own keys.
    The two softmaxes are merged exactly, flash-decoding style: with lse = max + log(sum) of each
    part's exponentials, out = (e^(lse_a-M) out_a + e^(lse_b-M) out_b) / (e^(lse_a-M) + e^(lse_b-M)),
    computed here from the unnormalised parts (e^(lse_a-M) out_a = e^(max_a-M) * unnormalised
    out_a), which spares a division and a log over the score matrices. The softmax and the merge
    are float32 whatever the model's dtype (as eager attention does), float64 for a float64 model.
    """
    rows, heads, _, dim = query.shape
    prompts, kv_heads, width, _ = prefix_keys.shape
    per_kv, m = heads // kv_heads, rows // prompts

    def by_row(x: torch.Tensor) -> torch.Tensor:  # [prompts * kv_heads, m * per_kv, k] -> [rows, kv_heads, per_kv, k]
        return x.reshape(prompts, kv_heads, m, per_kv, x.shape[-1]).transpose(1, 2).reshape(rows, kv_heads, per_kv, x.shape[-1])

    q = query.reshape(prompts, m, kv_heads, per_kv, dim).transpose(1, 2).reshape(prompts * kv_heads, m * per_kv, dim)
    scores = at_least_float32(torch.baddbmm(prefix_bias, q, prefix_keys.reshape(prompts * kv_heads, width, dim).transpose(1, 2),
                                            alpha=scaling))
    max_a = scores.amax(dim=-1, keepdim=True)
    weights = scores.sub_(max_a).exp_()
    sum_a = weights.sum(dim=-1, keepdim=True)
    out_a = torch.bmm(weights.to(prefix_values.dtype), prefix_values.reshape(prompts * kv_heads, width, dim))
    out_a, max_a, sum_a = at_least_float32(by_row(out_a)), by_row(max_a), by_row(sum_a)

    scores = at_least_float32(torch.matmul(query.reshape(rows, kv_heads, per_kv, dim), suffix_keys.transpose(-1, -2))).mul_(scaling)
    max_b = scores.amax(dim=-1, keepdim=True)
    weights = scores.sub_(max_b).exp_()
    sum_b = weights.sum(dim=-1, keepdim=True)
    out_b = at_least_float32(torch.matmul(weights.to(suffix_values.dtype), suffix_values))

    top = torch.maximum(max_a, max_b)
    w_a, w_b = (max_a - top).exp_(), (max_b - top).exp_()
    out = out_a.mul_(w_a).add_(out_b.mul_(w_b)).div_(sum_a.mul_(w_a).add_(sum_b.mul_(w_b)))
    return out.to(query.dtype).reshape(rows, 1, heads, dim)


def prefix_bias_of(valid: torch.Tensor, kv_heads: int, dtype: torch.dtype) -> torch.Tensor:
    """The additive mask `shared_prefix_attention` takes: valid [prompts, width] (True on a
    prompt's tokens) -> [prompts * kv_heads, 1, width], 0 there and -inf on the padding."""
    bias = torch.zeros(valid.shape, dtype=dtype, device=valid.device).masked_fill_(~valid, float("-inf"))
    return bias.repeat_interleave(kv_heads, dim=0).unsqueeze(1)


def _shared_prefix_attention_function(module, query, key, value, attention_mask, dropout: float = 0.0,
                                      scaling: float | None = None, **kwargs):
    """The AttentionInterface entry: a layer's attention during shared-prefix decoding. Refuses
    (`_SharedPrefixUnsupported`) whatever it would get wrong rather than guess."""
    state = kwargs.pop(_STATE_ARGUMENT, None)
    if state is None:
        raise RuntimeError(f"attention '{_ATTENTION_NAME}' runs only inside HFRolloutEngine's decoding")
    sliding_window = kwargs.pop("sliding_window", None)
    other = sorted(k for k, v in kwargs.items() if v is not None and k not in _INERT_ARGUMENTS)
    layer = getattr(module, "layer_idx", None)
    if other:
        raise _SharedPrefixUnsupported(f"its attention takes {', '.join(other)}")
    if sliding_window is not None and sliding_window < state.longest:
        raise _SharedPrefixUnsupported(f"its sliding window ({sliding_window}) is shorter than prompt + response")
    if attention_mask is not None or query.shape[2] != 1 or dropout or layer is None or kwargs.get("output_attentions"):
        raise _SharedPrefixUnsupported("its attention layers are called with a mask, dropout or no layer index")
    return state.attend(layer, query, key, value, query.shape[-1] ** -0.5 if scaling is None else scaling), None


AttentionInterface.register(_ATTENTION_NAME, _shared_prefix_attention_function)


@contextlib.contextmanager
def _attention_implementation(model, name: str):
    """The model's attention implementation set to `name` inside the block, restored after."""
    before = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def _pack(group_of: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Lay items out in a [groups, m] grid, flattened group-major, m the largest group.

    group_of [items]: each item's group, sorted (items of a group adjacent). Returns (source
    [groups * m]: the item each slot holds, padding slots repeating their group's first item;
    pad [groups * m], True on padding slots; groups: the distinct groups in order; m).
    """
    groups, inverse, counts = torch.unique_consecutive(group_of, return_inverse=True, return_counts=True)
    m = int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(group_of.numel(), device=group_of.device) - starts[inverse]
    source = starts.repeat_interleave(m).view(len(groups), m)
    source[inverse, rank] = torch.arange(group_of.numel(), device=group_of.device)
    pad = torch.ones((len(groups), m), dtype=torch.bool, device=group_of.device)
    pad[inverse, rank] = False
    return source.flatten(), pad.flatten(), groups, m


@functools.cache
def _cache_argument_of(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def cache_argument(model) -> str:
    """The name the model's forward takes its key/value cache by: `cache` from transformers 5.24
    on (`past_key_values` is deprecated there and removed in 5.40), `past_key_values` before."""
    return _cache_argument_of(type(model))


def _plan_chunks(num_prompts: int, n: int, max_rows: int) -> list[list[int]]:
    """Consecutive prompt indices grouped so that each chunk's n-fold rows fit max_rows."""
    per_chunk = max(1, max_rows // n)
    return [list(range(i, min(i + per_chunk, num_prompts))) for i in range(0, num_prompts, per_chunk)]


_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
"""splitmix64's increment (2**64 / golden ratio)."""


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that scatters every input bit over the output."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def row_keys(seed: int, prompt_indices: np.ndarray, sample_indices: np.ndarray) -> np.ndarray:
    """The 64-bit randomness key of each (prompt index, sample index) row of a call seeded `seed`.

    Arrays of uint64 wrap modulo 2**64 without warnings, which is the arithmetic splitmix64 wants.
    """
    golden = np.uint64(_GOLDEN)
    key = _mix64(np.array([seed & _MASK64], dtype=np.uint64) + golden)
    key = _mix64((key ^ np.asarray(prompt_indices, dtype=np.uint64)) + golden)
    return _mix64((key ^ np.asarray(sample_indices, dtype=np.uint64)) + golden)


def row_uniforms(keys: np.ndarray, step: int) -> np.ndarray:
    """Each row's uniform in [0, 1) at decode step `step`: the step-th output of splitmix64 started
    from the row's key, as float64 with 53 random bits."""
    z = _mix64(keys + np.uint64(((step + 1) * _GOLDEN) & _MASK64))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _sample(logits: torch.Tensor, sampling: SamplingParams, uniforms: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token per row and its log-probability under the (temperature-scaled) distribution.

    Sampling inverts each row's CDF at its own uniform (`uniforms`, one per row; unused when
    greedy), so a row's token depends on its logits and uniform alone, not on the other rows.
    """
    if sampling.temperature == 0:
        logp = torch.log_softmax(logits, dim=-1)
        tok = logits.argmax(dim=-1)
        return tok, logp.gather(-1, tok.unsqueeze(-1)).squeeze(-1)
    logp = torch.log_softmax(logits / sampling.temperature, dim=-1)
    probs = logp.exp()
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = (sorted_p.cumsum(-1) - sorted_p) >= sampling.top_p  # mass before this token already enough
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    cdf = probs.double().cumsum(-1)  # float64: a 150k-token vocabulary sums without visible drift
    total = cdf[:, -1:].contiguous()
    tok = torch.searchsorted(cdf, uniforms.unsqueeze(-1) * total, right=True)
    # u * total can round up to total; the first token where the CDF reaches it carries mass
    tok = torch.minimum(tok, torch.searchsorted(cdf, total)).squeeze(-1)
    return tok, logp.gather(-1, tok.unsqueeze(-1)).squeeze(-1)


def _generation_copy(model, dtype: torch.dtype):
    """The model in `dtype` for the rollout engine, as `from_pretrained(dtype=...)` would load it:
    weights and persistent buffers cast, non-persistent float buffers (RoPE's inv_freq) kept in
    their precision. `Module.to` would round those too, and `load_state_dict` never refreshes them."""
    out = copy.deepcopy(model).to(dtype).eval().requires_grad_(False)
    if dtype == torch.float64:  # as load_policy gives a float64 model: float64 throughout
        float64_throughout(out)
    persistent = set(model.state_dict())
    for name, buffer in model.named_buffers():
        if name not in persistent and buffer.is_floating_point():
            owner, _, attr = name.rpartition(".")
            out.get_submodule(owner).register_buffer(attr, buffer.detach().clone(), persistent=False)
    return out
