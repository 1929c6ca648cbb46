"""`step_scaling` (ProRL): the recipe's batch as it is: N=16 rollouts per prompt, many steps."""

from __future__ import annotations

from harness.config import Config
from harness.trainers.grpo import ArmSettings, GRPOTrainer


def settings(config: Config) -> ArmSettings:
    t = config.train
    return ArmSettings(n=t.n, prompts_per_step=t.prompts_per_step, learning_rate=t.learning_rate, lr_rule="as given")


def build(config: Config, model, tokenizer, suites) -> GRPOTrainer:
    return GRPOTrainer("step_scaling", config, settings(config), model, tokenizer, suites)
