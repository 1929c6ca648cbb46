"""The trainer seam: what the harness's training loop needs from any trainer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from harness.config import RolloutConfig, ScoringConfig, TrainConfig
from suites import Suite


@runtime_checkable
class Trainer(Protocol):
    """One RL arm. The harness calls `step` until its budget is spent and saves `state_dict` with
    the policy weights; `load_state_dict` on a freshly built trainer must continue exactly."""

    name: str
    """Registered name (step_scaling, rollout_scaling, ...)."""
    policy: Any
    """The transformers model being trained (saved with save_pretrained at checkpoints)."""

    def settings(self) -> dict[str, Any]:
        """Resolved hyperparameters of this arm (n, prompts per step, learning rate, rule used)."""
        ...

    def step(self) -> dict[str, Any]:
        """One RL step (generate, score, filter, update); returns the step's metrics."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything besides the policy weights needed to resume bit-for-bit."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...


class TrainerBuilder(Protocol):
    """What builds a trainer, and so everything a trainer may depend on: the `train` section (the
    recipe and the arm's settings), the `rollout` section (its engine), the `scoring` section (its
    scorer pool), the profile's master seed, the policy to train, its tokenizer and the suites
    that give the training prompts and rewards. The training loop calls it with keywords;
    `registry.get_builder` refuses a builder whose parameters differ (BUILDER_PARAMETERS)."""

    def __call__(self, *, train: TrainConfig, rollout: RolloutConfig, scoring: ScoringConfig, seed: int,
                 model: Any, tokenizer: Any, suites: Sequence[Suite]) -> Trainer:
        ...


BUILDER_PARAMETERS = ("train", "rollout", "scoring", "seed", "model", "tokenizer", "suites")
"""The keyword parameters of every `TrainerBuilder`, in order."""
