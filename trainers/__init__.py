"""Pluggable RL trainers (the shared GRPO-family core, step_scaling, rollout_scaling).

Nothing is registered yet: the trainers arrive with the "Trainers" issue.
"""
