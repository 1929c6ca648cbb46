"""The rollout-engine seam: N samples for each prompt, with logprobs and timings.

An engine takes already-rendered prompt strings (chat template applied by the caller) and returns
one `Group` of `n` samples per prompt, in prompt order. Engines: `hf` (transformers, in-process,
prefix-shared KV cache; harness/rollout/hf.py) and `vllm` (harness/rollout/vllm.py).

Randomness belongs to each sample, not to the batch: sample j of prompt i is drawn from
(seed, first_prompt_index + i, j) alone, so batch sizes, chunking and how a caller splits its
prompts into calls do not change which random numbers a sample uses (a vLLM engine maps this to a
per-request seed). The logits themselves can differ in the last bits with the batch's shape
(padding, reduction order), so a draw that falls within that distance of a token boundary can
still flip: samples are identical up to floating-point differences in the logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    """How to sample; the defaults are plain ancestral sampling."""

    temperature: float = 1.0
    """Softmax temperature; 0 means greedy (argmax)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    max_new_tokens: int = 64
    """Longest response; a sample cut here finishes with reason `length`."""
    seed: int | None = None
    """Seed for this call's sampling: with the same seed, each (prompt, sample index) gets the same
    sample whatever the engine's batch sizes; None draws a seed from torch's global generator."""
    first_prompt_index: int = 0
    """Index of this call's first prompt in the caller's whole list: sample j of prompt i draws its
    randomness from (seed, first_prompt_index + i, j), so a list split into calls with the same
    seed and these offsets gives the same samples."""
    stop_token_ids: tuple[int, ...] | None = None
    """Tokens that end a sample (kept as its last token); None means the model's EOS tokens."""

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.first_prompt_index < 0:
            raise ValueError(f"first_prompt_index must be >= 0, got {self.first_prompt_index}")


@dataclass
class Sample:
    """One generated response."""

    token_ids: list[int]
    """Generated tokens, including the stop token when the sample stopped."""
    text: str
    """Decoded response without the stop token."""
    logprobs: list[float]
    """Log-probability of each generated token under the sampling distribution (logits divided by
    the temperature, before top-p truncation; raw logits when greedy). Used for importance
    sampling against the trainer's own logprobs."""
    finish_reason: Literal["stop", "length"]
    """`stop`: a stop token was generated; `length`: max_new_tokens was reached."""

    @property
    def num_tokens(self) -> int:
        """Output token count (the stop token included)."""
        return len(self.token_ids)


@dataclass
class Group:
    """The n samples of one prompt; they share its prompt prefix."""

    prompt: str
    prompt_ids: list[int]
    samples: list[Sample] = field(default_factory=list)


@dataclass
class RolloutResult:
    """Everything one `generate` call produced, with its timing."""

    groups: list[Group]
    """One group per prompt, in the order the prompts were given."""
    generation_s: float
    """Wall-clock seconds of generation alone (tokenising, prefill, decoding)."""

    @property
    def num_samples(self) -> int:
        return sum(len(g.samples) for g in self.groups)

    @property
    def num_output_tokens(self) -> int:
        return sum(s.num_tokens for g in self.groups for s in g.samples)

    @property
    def samples_per_s(self) -> float:
        return self.num_samples / self.generation_s if self.generation_s > 0 else float("inf")

    @property
    def tokens_per_s(self) -> float:
        return self.num_output_tokens / self.generation_s if self.generation_s > 0 else float("inf")


@runtime_checkable
class RolloutEngine(Protocol):
    """Generates groups of samples; the policy's weights are the engine's business."""

    name: str

    def generate(self, prompts: Sequence[str], n: int, sampling: SamplingParams) -> RolloutResult:
        """`n` samples for each prompt; `prompts` are final strings (chat template applied).

        Sample j of prompt i draws its random numbers from (seed, first_prompt_index + i, j) only,
        never from the other prompts or the batching (up to floating-point differences in the
        logits, see the module docstring).
        """
        ...

    def sync_weights(self, model) -> None:
        """Generate from `model`'s current weights from now on (a trainer calls it before every step;
        engines holding their own copy or server push the weights there)."""
        ...

    def release(self) -> None:
        """Free what generation holds while the trainer updates (vLLM's sleep mode); the next
        `generate` or `sync_weights` takes it back. A no-op for engines that hold nothing."""
        ...


def model_stop_ids(model, tokenizer) -> tuple[int, ...]:
    """The model's EOS tokens (generation config first, then the tokenizer): where every engine stops
    a sample unless `SamplingParams.stop_token_ids` says otherwise."""
    ids: list[int] = []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, tokenizer.eos_token_id):
        if value is None:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if int(v) not in ids:
                ids.append(int(v))
    return tuple(ids)
