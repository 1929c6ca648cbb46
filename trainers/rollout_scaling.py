"""`rollout_scaling` (BroRL): many more rollouts per prompt, derived from the shared recipe.

From the step-scaling batch (train.n rollouts x train.prompts_per_step prompts, learning rate lr):
N = rollout_scaling.n (512), prompts per step = train.prompts_per_step / prompt_divisor (4), and
the learning rate scaled by the samples-per-step ratio r = (N x prompts) / (train.n x
train.prompts_per_step) under `lr_rule` (sqrt: lr x sqrt(r), the paper's 2.83x at r = 8). The
number of PPO mini-batches per step stays the same, so each optimizer step sees r times more
samples. Everything else is the shared recipe.

With `rollout_scaling.samples_per_step` S > 0 the step's samples are held at S instead: prompts
per step = S / N (N must divide S), and r = S / (train.n x train.prompts_per_step), the same for
every N, so N changes how the samples are spread over prompts and nothing else (`harness sweep`).
"""

from __future__ import annotations

import math

from harness.config import ConfigError, TrainConfig
from trainers.grpo import ArmSettings, GRPOTrainer


def settings(t: TrainConfig) -> ArmSettings:
    rule = t.rollout_scaling
    if rule.samples_per_step:
        if rule.samples_per_step % rule.n:
            raise ConfigError(
                f"invalid value for 'train.rollout_scaling.n': {rule.n} does not divide "
                f"train.rollout_scaling.samples_per_step ({rule.samples_per_step}) into whole prompts per step"
            )
        prompts = rule.samples_per_step // rule.n
    else:
        prompts = t.prompts_per_step // rule.prompt_divisor
    if prompts < 1:
        raise ConfigError(
            f"invalid value for 'train.rollout_scaling.prompt_divisor': {rule.prompt_divisor}; "
            f"must be <= train.prompts_per_step ({t.prompts_per_step})"
        )
    ratio = (rule.n * prompts) / (t.n * t.prompts_per_step)
    scale = {"sqrt": math.sqrt(ratio), "linear": ratio, "none": 1.0}[rule.lr_rule]
    return ArmSettings(
        n=rule.n,
        prompts_per_step=prompts,
        learning_rate=t.learning_rate * scale,
        lr_rule=f"{rule.lr_rule}: {t.learning_rate:g} x {scale:.3f} (samples-per-step ratio {ratio:g})",
    )


def build(*, train, rollout, scoring, seed, model, tokenizer, suites) -> GRPOTrainer:
    """The `trainers.base.TrainerBuilder` of this arm."""
    return GRPOTrainer("rollout_scaling", settings(train), train=train, rollout=rollout, scoring=scoring, seed=seed,
                       model=model, tokenizer=tokenizer, suites=suites)
