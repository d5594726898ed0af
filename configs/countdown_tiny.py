"""R1-Zero on a CPU: a tiny model pretrained in-run, then GRPO on Countdown. The README's main job.

    python -m r1jax.main --config configs/countdown_tiny.py
    python -m r1jax.main --config configs/countdown_tiny.py --config.seed=1 --workdir workdir/seed1
    python -m r1jax.main --config configs/countdown_tiny.py:smoke --workdir /tmp/smoke

Stage 0 (`pretrain`) trains a 0.2M-parameter model on synthetic text: Countdown traces whose attempts
are computed step by step ('chain' style, every value at most 100) but whose answer is one of the
attempts picked at random, plus single-operation arithmetic drills. The base model therefore knows
the format and the arithmetic but not to answer with the attempt that hits the target. Stage 1 is
GRPO with the Countdown reward (1 for a correct equation, 0.1 for a well-formed wrong one), evaluated
greedily on 256 held-out problems before, during and after. Variant `smoke` is a few-second run for tests.
"""

from r1jax.config import grpo_config


def get_config(arg: str | None = None):
    config = grpo_config()
    config.model.name = "tiny-countdown"
    config.tokenizer = "char"
    config.data.template = "compact"
    config.data.countdown.update(min_count=3, max_count=3, max_number=20, max_target=50, train_size=4096,
                                 test_size=256)
    config.pretrain.update(steps=2500, batch_size=8, seq_len=256, learning_rate=3e-3, style="chain",
                           max_attempts=4, max_value=100, arithmetic_facts=100_000)
    config.rollout.update(prompts_per_step=16, group_size=8, max_new_tokens=128)
    config.grpo.update(minibatch_size=64)
    config.rewards = [dict(name="countdown", weight=1.0)]
    config.optimizer.update(learning_rate=2e-4, warmup_steps=5)
    config.steps = 200
    config.eval.update(every=25, num_examples=256, batch_size=128)
    config.checkpoint_every = 25
    if arg == "smoke":
        config.steps = 2
        config.pretrain.update(steps=2, arithmetic_facts=100, traces_per_example=1)
        config.data.countdown.update(train_size=256, test_size=16)
        config.rollout.update(prompts_per_step=4, group_size=4, max_new_tokens=16)
        config.grpo.update(minibatch_size=8, num_iterations=2)
        config.eval.update(every=1, num_examples=16, batch_size=16)
        config.rewards = [dict(name="countdown", weight=1.0),
                          dict(name="format_tags", weight=0.1, kwargs=dict(prefill="<think>"))]
        config.checkpoint_every = 1
    elif arg:
        raise ValueError(f"unknown variant {arg!r}; the only variant is 'smoke'")
    return config
