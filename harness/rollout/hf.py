"""`hf` rollout engine: transformers model in-process, each prompt prefilled once for its N samples.

How a call runs:
1. Prompts are split into chunks whose samples fit `max_batch_sequences` (a prompt whose n alone
   exceeds it gets a chunk of its own).
2. Each chunk's prompts are left-padded and prefilled in ONE forward pass. No prompt is ever
   recomputed: its key/value cache is copied to its n sample rows (index select on the cache).
3. Rows are decoded together, one token per forward pass for all of them; a row that stops (EOS
   or max_new_tokens) is dropped from the batch, cache included, so later steps only pay for live
   rows. When n exceeds `max_batch_sequences`, the rows of one prefill are decoded in several
   row batches, each started from the same prefilled cache.
4. Randomness is per sample, not per batch: sample j of prompt i draws its token at each step from
   a counter-based stream keyed by (seed, first_prompt_index + i, j), so how prompts are chunked
   and rows batched (`max_batch_sequences`, prompts per call) does not change a sample's random
   numbers (samples are identical up to floating-point differences in the logits).

What it leaves out compared with vLLM: no paged attention, no continuous batching across calls,
no CUDA graphs. It is the reference engine for CPUs and tests, and the fallback on GPUs.
"""

from __future__ import annotations

import copy
import functools
import inspect
import time
from typing import Sequence

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

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
    ):
        """Generates from `model` itself, or, when `dtype` differs from the model's, from its own
        copy in `dtype` (which `sync_weights` refreshes)."""
        if max_batch_sequences < 1:
            raise ValueError(f"max_batch_sequences must be >= 1, got {max_batch_sequences}")
        self.model = model if dtype is None or dtype == model.dtype else _generation_copy(model, dtype)
        self.tokenizer = tokenizer
        self.max_batch_sequences = max_batch_sequences
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

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
        last_logits = out.logits[:, -1, :].float()
        last_pos = positions[:, -1]

        rows = [p for p in range(len(prompt_ids)) for _ in range(n)]
        single_batch = len(rows) <= self.max_batch_sequences
        for start in range(0, len(rows), self.max_batch_sequences):
            idx = torch.tensor(rows[start:start + self.max_batch_sequences], device=device)
            # Index-select copies each prompt's cache to its sample rows; the prefill is reused as
            # is when one row batch covers the chunk, else each row batch starts from a copy.
            cache = prefill_cache if single_batch else copy.deepcopy(prefill_cache)
            cache.batch_select_indices(idx)
            samples = self._decode(cache, last_logits[idx], mask[idx], last_pos[idx], sampling, stop_ids,
                                   keys[start:start + self.max_batch_sequences])
            for prompt_index, sample in zip(idx.tolist(), samples):
                groups[prompt_index].samples.append(sample)

    def _decode(self, cache, logits, mask, last_pos, sampling, stop_ids, keys) -> list[Sample]:
        """Decode a batch of rows that share prefilled caches; return their samples in row order.
        `keys` holds each row's randomness key (row_keys)."""
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
            logits = out.logits[:, -1, :].float()
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
    persistent = set(model.state_dict())
    for name, buffer in model.named_buffers():
        if name not in persistent and buffer.is_floating_point():
            owner, _, attr = name.rpartition(".")
            out.get_submodule(owner).register_buffer(attr, buffer.detach().clone(), persistent=False)
    return out
