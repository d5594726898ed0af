"""Rejection sampling from the tiny Countdown policy: its verified traces become SFT data for a student.

    python -m r1jax.main --config configs/countdown_tiny.py             # first: the teacher (and its base)
    python -m r1jax.main --config configs/distill_countdown_tiny.py
    python -m r1jax.main --config configs/distill_countdown_tiny.py --config.traces_file=outputs.jsonl \
        --workdir workdir/distill_other_model
    python -m r1jax.main --config configs/sft_countdown_tiny.py         # then: the student
    python -m r1jax.main --config configs/distill_countdown_tiny.py:journey     # journeys of its own samples

The teacher is the main job's exported policy (`workdir/countdown_tiny/hf_export`, with its character
tokenizer; another with --config.model.checkpoint=DIR). Task, prompt and completion budget are
countdown_tiny's, read from that file: its 4096 training problems, the 'compact' template, 96 new tokens,
stop at "</answer>". Four samples per problem at temperature 1, verified by the Countdown reward (an
exact equation using both numbers); the first correct one of each problem is kept, in
`workdir/distill_countdown_tiny/distill.jsonl`. With `traces_file`, another model's outputs
(`prompt_id`, `completion` per line) are verified instead.

Variant `journey` writes journey-learning data from the same kind of samples (`keep: 'journey'`): up to two
of a problem's wrong samples, each followed by " Wait, that is wrong. ", then its first correct one. Its
student: `configs/sft_countdown_tiny.py --config.data.train_file=workdir/distill_countdown_tiny_journey/distill.jsonl`.
"""

import os

from r1jax.config import distill_config, load_config_file


def get_config(arg: str | None = None):
    if arg not in (None, "", "journey"):
        raise ValueError(f"unknown variant {arg!r} of configs/distill_countdown_tiny.py; the only one is 'journey'")
    teacher_run = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "countdown_tiny.py"))
    config = distill_config()
    config.model.update(name="tiny", checkpoint="workdir/countdown_tiny/hf_export")  # name: the architecture
    config.data = teacher_run.data
    config.sampling.update(num_samples=4, max_new_tokens=teacher_run.rollout.max_new_tokens,
                           stop_strings=tuple(teacher_run.rollout.stop_strings))
    config.prompt_batch_size = 256
    config.rewards = [dict(name="countdown", weight=1.0)]
    config.accuracy_reward = "countdown"
    config.keep = "first"
    if arg == "journey":
        config.keep = "journey"
        config.journey.update(min_wrong=0, max_wrong=2, transition=" Wait, that is wrong. ")
    return config
