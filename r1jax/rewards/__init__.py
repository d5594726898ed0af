"""Rule-based rewards for reasoning RL (DeepSeek-R1 / TinyZero style).

Modules: `countdown` (TinyZero arithmetic game), `math` (answer extraction and equivalence),
`format` (R1 layout and the shared tag helpers), `language` (chain-of-thought language
consistency), `length` (overlong, cosine and repetition shaping), `code` (unit tests run in a
sandbox), `registry` (weighted composition over batches). A config may also name a reward outside
this package as "package.module:function"; `registry.resolve` imports it on first use.
"""
from r1jax.rewards import code, countdown, format, language, length, math
from r1jax.rewards.registry import REGISTRY, BatchScores, RewardSet, RewardSpec, register, resolve

__all__ = [
    "REGISTRY",
    "BatchScores",
    "RewardSet",
    "RewardSpec",
    "code",
    "countdown",
    "format",
    "language",
    "length",
    "math",
    "register",
    "resolve",
]
