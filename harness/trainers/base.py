"""The trainer seam: what the harness's training loop needs from any trainer."""

from __future__ import annotations

from typing import Any, Protocol


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
