"""R1-Zero on a CPU: a tiny model pretrained in-run, then GRPO on Countdown. The README's main job.

    python -m r1jax.main --config configs/countdown_tiny.py
    python -m r1jax.main --config configs/countdown_tiny.py --config.seed=1 --workdir workdir/seed1
    python -m r1jax.main --config configs/countdown_tiny.py:smoke --workdir /tmp/smoke

The smallest Countdown (two numbers in 1..99, a target up to 100 reachable with + - * /), so that a
0.8M-parameter model can learn the arithmetic on two CPU cores in minutes.

Stage 0 (`pretrain`, 6-7 minutes) trains the model from random weights on synthetic text
(`r1jax.data.synthetic`): for every training problem, traces of 1-4 distinct attempts written with their
values ("57-16=41, 57+16=73") whose LAST attempt is the answer whether or not it hit the target, plus
single-operation arithmetic drills. The base model so knows the format and the arithmetic but stops
its search at random, often right after passing over the hit. Its training state is checkpointed every
250 steps (`pretrain.checkpoint_every`): stopped (SIGTERM: exit code 75) or killed, the same command
continues it.

Stage 1 is GRPO with TinyZero's Countdown reward (1 for a correct equation, 0.1 for a well-formed wrong
one), evaluated greedily on 256 held-out problems at the start and every 20 steps. What it learns is
to check each attempt's value against the target and answer as soon as one hits.
Variant `smoke` is a few-second run for tests.
"""

from r1jax.config import grpo_config


def get_config(arg: str | None = None):
    config = grpo_config()
    config.model.update(name="tiny", vocab_size=104)  # the character tokenizer's 102 tokens, rounded up to 8
    config.model.scan_layers = False  # 4 layers unrolled: the same numbers as the scan, steps 20% faster on a CPU
    config.tokenizer = "char"
    config.data.template = "compact"
    config.data.countdown.update(min_count=2, max_count=2, max_number=99, max_target=100, train_size=4096,
                                 test_size=256)
    # Rows of 128 tokens: every trace fits (79 at most), and a step of 16x128 ran 21% faster than 8x256; 17 rows
    # keep the trained tokens per step those of 8 rows of 256 (rows of 128 pack 86% full, of 256 94%).
    config.pretrain.update(steps=1500, batch_size=17, seq_len=128, learning_rate=2e-3, style="inline",
                           max_attempts=4, max_value=100, traces_per_example=4, arithmetic_facts=100_000)
    config.rollout.update(prompts_per_step=16, group_size=8, max_new_tokens=96)
    config.grpo.update(minibatch_size=64)
    config.rewards = [dict(name="countdown", weight=1.0)]
    # Cosine decay to a tenth at the last step: the final policy is a settled one, not a snapshot of a
    # fluctuating one (a constant rate swung 4-8 points between evaluations).
    config.optimizer.update(learning_rate=2e-4, warmup_steps=5, schedule="cosine")
    config.steps = 120  # with the decay over 120 steps, every seed ended higher than over 150
    config.eval.update(every=20, num_examples=256, batch_size=128)
    config.checkpoint_every = 20
    if arg == "smoke":
        config.model.scan_layers = True  # compiles faster: a few-step run is mostly compiling
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
