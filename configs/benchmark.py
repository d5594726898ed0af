"""Forward-pass benchmark: compile ahead, print per-device memory, time tokens/s and TFLOP/s.

    python -m r1jax.main --config configs/benchmark.py
    python -m r1jax.main --config configs/benchmark.py:qwen2.5-0.5b --config.batch_size=4
    python -m r1jax.main --config configs/benchmark.py --config.model.checkpoint=/path/to/hf_model

The variant is a model name from r1jax.model.MODEL_CONFIGS (default: tiny, random weights).
"""

from r1jax.config import base_config


def get_config(arg: str | None = None):
    config = base_config()
    config.mode = "benchmark"
    config.model.name = arg or "tiny"
    config.batch_size = 8
    config.seq_len = 256
    config.steps = 10
    return config
