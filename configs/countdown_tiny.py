"""GRPO on Countdown with a tiny model and the character tokenizer, on a CPU.

    python -m r1jax.main --config configs/countdown_tiny.py
    python -m r1jax.main --config configs/countdown_tiny.py:smoke --workdir /tmp/smoke

The model starts from random weights: this config exercises the whole GRPO loop (rollouts, rewards,
updates, evaluation, checkpoints) but does not yet start from a pretrained base, so it is not expected
to learn Countdown. Variant `smoke` is a few-second run for tests.
"""

from r1jax.config import grpo_config


def get_config(arg: str | None = None):
    config = grpo_config()
    config.model.name = "tiny"
    config.model.vocab_size = 104  # the character tokenizer's 102 tokens, rounded up to a multiple of 8
    config.tokenizer = "char"
    config.data.template = "compact"
    config.data.countdown.update(min_count=3, max_count=3, max_number=20, max_target=50, train_size=4096,
                                 test_size=256)
    config.rollout.update(prompts_per_step=8, group_size=8, max_new_tokens=64)
    config.grpo.update(minibatch_size=32)
    config.rewards = [dict(name="countdown", weight=1.0),
                      dict(name="format_tags", weight=0.1, kwargs=dict(prefill="<think>"))]
    config.optimizer.update(learning_rate=1e-4, warmup_steps=2)
    config.steps = 50
    config.eval.update(every=10, num_examples=256, batch_size=64)
    if arg == "smoke":
        config.steps = 2
        config.data.countdown.update(train_size=256, test_size=16)
        config.rollout.update(prompts_per_step=4, group_size=4, max_new_tokens=16)
        config.grpo.update(minibatch_size=8, num_iterations=2)
        config.eval.update(every=1, num_examples=16, batch_size=16)
        config.checkpoint_every = 1
    return config
