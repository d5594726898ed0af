"""The modes `python -m r1jax.main` runs: mode -> module with `run(config, workdir)`, imported only when chosen.

Kept apart from `main.py`, whose flags may be defined once per process, so that the pipeline mode can run
the other modes.
"""

MODES = {
    "grpo": "r1jax.rl.trainer",
    "benchmark": "r1jax.benchmark",
    "generate": "r1jax.generate",
    "sft": "r1jax.sft",
    "distill": "r1jax.distill",
    "evaluate": "r1jax.evaluate_mode",
    "pipeline": "r1jax.pipeline",
}
