"""Inference-time scaling of the tiny Countdown model (configs/countdown_tiny.py's task) on its 256 test problems.

    python -m r1jax.main --config configs/eval_countdown.py
    python -m r1jax.main --config configs/eval_countdown.py --config.model.checkpoint=workdir/countdown_tiny/base \
        --workdir workdir/eval_countdown_base
    python -m r1jax.main --config configs/eval_countdown.py:smoke --config.model.checkpoint=DIR --workdir /tmp/eval_smoke

The default checkpoint is the policy the default GRPO run exports (`workdir/countdown_tiny/hf_export`, with
its character tokenizer); its pretrained base model is `workdir/countdown_tiny/base`. Data, prompt and
completion budget are countdown_tiny's: two numbers in 1..99, targets up to 100, the 'compact' template,
the test split of 256 problems (data seed 0), 96 new tokens, stop at "</answer>".

Methods (r1jax/evaluate_mode.py): greedy; 64 samples per problem at R1's temperature 0.6 / top-p 0.95 with
pass@N, maj@N and best-of-N (verifier: the Countdown reward; mean log-prob) for N = 1..64; beam search of
widths 2, 4, 8; budget forcing at minimum thinking budgets 0, 24 and 48 tokens (maximum 64). The model
separates its attempts with ", " and never read "Wait"; ", " is its way to think on, so that is what
budget forcing appends when it drops an early "</think>".
Variant `smoke`: 8 problems, 4 samples, 16 tokens, for tests (seconds).
"""

import os

from r1jax.config import load_config_file
from r1jax.evaluate_mode import eval_config


def get_config(arg: str | None = None):
    main_job = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "countdown_tiny.py"))
    config = eval_config()
    config.model.update(name="tiny", checkpoint="workdir/countdown_tiny/hf_export")  # name: the architecture
    config.data.update(name="countdown", template=main_job.data.template, num_examples=main_job.data.countdown.test_size)
    config.data.countdown.update(main_job.data.countdown)
    config.max_new_tokens = main_job.rollout.max_new_tokens
    config.stop_strings = tuple(main_job.rollout.stop_strings)
    config.prompt_batch_size = 16  # x 64 samples: 1024 rows per sampler call
    config.verifier = [dict(name="countdown", weight=1.0)]
    config.sampling.update(num_samples=64)
    config.beam_search.update(widths=(2, 4, 8))
    config.budget_forcing.update(budgets=((0, 64), (24, 64), (48, 64)), max_answer_tokens=32, wait=", ")
    if arg == "smoke":
        config.data.update(num_examples=8)
        config.data.countdown.update(train_size=64, test_size=8)
        config.max_new_tokens = 16
        config.prompt_batch_size = 8
        config.sampling.update(num_samples=4)
        config.beam_search.update(widths=(2,))
        config.budget_forcing.update(budgets=((4, 8),), max_answer_tokens=8)
    elif arg:
        raise ValueError(f"unknown variant {arg!r}; the only variant is 'smoke'")
    return config
