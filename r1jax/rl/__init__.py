"""Reinforcement learning: GRPO and its variants."""
