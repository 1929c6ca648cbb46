"""Rollout engines behind one interface; `make_engine` builds the one the `rollout` section names."""

from __future__ import annotations

from harness.config import RolloutConfig
from harness.rollout.base import Group, RolloutEngine, RolloutResult, Sample, SamplingParams
from harness.rollout.hf import HFRolloutEngine

ENGINES = ("hf",)


def make_engine(rollout: RolloutConfig, model, tokenizer) -> RolloutEngine:
    """The engine the `rollout` section names, around an in-memory model and tokenizer."""
    if rollout.engine == "hf":
        return HFRolloutEngine(model, tokenizer, max_batch_sequences=rollout.max_batch_sequences)
    raise ValueError(f"unknown rollout engine '{rollout.engine}'; valid: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Group", "RolloutEngine", "RolloutResult", "Sample", "SamplingParams", "make_engine"]
