"""The rollout-engine seam: N samples for each prompt, with logprobs and timings.

An engine takes already-rendered prompt strings (chat template applied by the caller) and returns
one `Group` of `n` samples per prompt, in prompt order. Engines: `hf` (transformers, in-process,
prefix-shared KV cache; harness/rollout/hf.py). A vLLM engine implements the same `generate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence


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
    """Seed for this call's sampling; the same seed, prompts and n give the same samples."""
    stop_token_ids: tuple[int, ...] | None = None
    """Tokens that end a sample (kept as its last token); None means the model's EOS tokens."""

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


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


class RolloutEngine(Protocol):
    """Generates groups of samples; the policy's weights are the engine's business."""

    name: str

    def generate(self, prompts: Sequence[str], n: int, sampling: SamplingParams) -> RolloutResult:
        """`n` samples for each prompt; `prompts` are final strings (chat template applied)."""
        ...
