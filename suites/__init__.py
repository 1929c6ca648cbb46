"""Evaluation and reward suites; the same scorer serves training rewards and evaluation scores.

`build_suite(name, config)` returns a suite configured by a profile. Suites: reasoning_gym.
"""

from __future__ import annotations

from suites.base import Item, ScoreResult, Suite

SUITES = ("reasoning_gym",)


def build_suite(name: str, config) -> Suite:
    """The suite `name` as the profile `config` (a harness Config) defines it."""
    if name == "reasoning_gym":
        from suites.reasoning_gym import ReasoningGymSuite

        return ReasoningGymSuite.from_config(config.suites.reasoning_gym, seed=config.seed)
    raise ValueError(f"unknown suite '{name}'; valid: {', '.join(SUITES)}")


__all__ = ["SUITES", "Item", "ScoreResult", "Suite", "build_suite"]
