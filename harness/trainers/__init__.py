"""Pluggable RL trainers (the shared GRPO-family core, step_scaling, rollout_scaling).

Built-ins and plug-ins are listed by name in trainers/registry.py; the pure tensor pieces are in
trainers/core.py, the RL step both arms share in trainers/grpo.py.
"""
