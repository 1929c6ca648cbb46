"""Rollout engines behind one interface; `make_engine` picks one by name."""

from __future__ import annotations

from harness.rollout.base import Group, RolloutEngine, RolloutResult, Sample, SamplingParams
from harness.rollout.hf import HFRolloutEngine

ENGINES = ("hf",)


def make_engine(name: str, model, tokenizer, max_batch_sequences: int = 1024) -> RolloutEngine:
    """Build the engine called `name` around an in-memory model and tokenizer."""
    if name == "hf":
        return HFRolloutEngine(model, tokenizer, max_batch_sequences=max_batch_sequences)
    raise ValueError(f"unknown rollout engine '{name}'; valid: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Group", "RolloutEngine", "RolloutResult", "Sample", "SamplingParams", "make_engine"]
