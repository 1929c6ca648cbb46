"""Pluggable RL trainers: the shared GRPO-family core, step_scaling (ProRL) and rollout_scaling (BroRL).

Built-ins and plug-ins are listed by name in trainers/registry.py; the pure tensor pieces are in
trainers/core.py, the RL step both arms share in trainers/grpo.py.

Adding a trainer:
1. Implement the protocol `trainers.base.Trainer` (`name`, `policy`, `settings()`, `step() -> metrics`,
   `state_dict()` / `load_state_dict()` for exact resume); subclassing `grpo.GRPOTrainer` with other
   `ArmSettings` is the short way, as step_scaling.py and rollout_scaling.py do.
2. Write a builder with exactly the `trainers.base.TrainerBuilder` keywords (train, rollout, scoring, seed,
   model, tokenizer, suites).
3. Register it: a line in `registry._BUILTIN` for a built-in, or, from another distribution, an entry point in
   the group `harness.trainers`; `train.trainer: NAME` in a recipe then selects it.
This package builds on the harness's foundation and on `suites`: never on the jobs, backends or report.
"""
