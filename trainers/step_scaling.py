"""`step_scaling` (ProRL): the recipe's batch as it is: N=16 rollouts per prompt, many steps."""

from __future__ import annotations

from harness.config import TrainConfig
from trainers.grpo import ArmSettings, GRPOTrainer


def settings(train: TrainConfig) -> ArmSettings:
    return ArmSettings(n=train.n, prompts_per_step=train.prompts_per_step, learning_rate=train.learning_rate, lr_rule="as given")


def build(*, train, rollout, scoring, seed, model, tokenizer, suites) -> GRPOTrainer:
    """The `trainers.base.TrainerBuilder` of this arm."""
    return GRPOTrainer("step_scaling", settings(train), train=train, rollout=rollout, scoring=scoring, seed=seed,
                       model=model, tokenizer=tokenizer, suites=suites)
