"""Pluggable RL trainers (the shared GRPO-family core, step_scaling, rollout_scaling).

Built-ins and plug-ins are listed by name in harness/trainers/registry.py; the pure tensor pieces are in
harness/trainers/core.py, the RL step both arms share in harness/trainers/grpo.py.
"""
