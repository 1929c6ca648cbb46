"""Rollout-scaling harness: run, measure and compare step-scaling and rollout-scaling RL."""
