"""Rollout engines behind one interface; `make_engine` builds the one the `rollout` section names."""

from __future__ import annotations

import torch

from harness.config import RolloutConfig
from harness.rollout.base import Group, RolloutEngine, RolloutResult, Sample, SamplingParams
from harness.rollout.hf import HFRolloutEngine
from harness.rollout.vllm import VLLMRolloutEngine, check_vllm

ENGINES = ("hf", "vllm")


def check_engine(rollout: RolloutConfig) -> None:
    """Refuse, in one line (ConfigError), an engine that cannot run here (vLLM not installed). The
    CLI calls it right after loading a profile, before anything is written; `make_engine` again."""
    if rollout.engine == "vllm":
        check_vllm()


def make_engine(rollout: RolloutConfig, model, tokenizer, seed: int = 0) -> RolloutEngine:
    """The engine the `rollout` section names, generating from `model` (in `rollout.dtype`: the `hf`
    engine keeps its own copy when the model's precision differs). `seed` seeds an engine that
    takes one at start-up (vLLM)."""
    check_engine(rollout)
    if rollout.engine == "hf":
        return HFRolloutEngine(model, tokenizer, max_batch_sequences=rollout.max_batch_sequences,
                               dtype=getattr(torch, rollout.dtype))
    if rollout.engine == "vllm":
        return VLLMRolloutEngine(model, tokenizer, rollout, seed=seed)
    raise ValueError(f"unknown rollout engine '{rollout.engine}'; valid: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Group", "RolloutEngine", "RolloutResult", "Sample", "SamplingParams", "check_engine", "make_engine"]
