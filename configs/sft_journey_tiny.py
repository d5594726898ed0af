"""Journey learning against shortcut learning on Countdown: two students SFT'd from the same tiny base.

    python -m r1jax.main --config configs/sft_journey_tiny.py:journey --workdir workdir/sft_journey
    python -m r1jax.main --config configs/sft_journey_tiny.py:shortcut --workdir workdir/sft_shortcut
    python -m r1jax.main --config configs/sft_journey_tiny.py:journey,smoke --workdir /tmp/journey_smoke

Both start from the main job's pretrained base model (`workdir/countdown_tiny/base`, made by
`python -m r1jax.main --config configs/countdown_tiny.py`) and train 500 steps on data built in the run
(`r1jax.data.journey`) from countdown_tiny's problems, read from that file. 'journey' writes 0-3 wrong
attempts, each with the check that catches it and "Try another.", then the reference solution and the
answer; 'shortcut' writes the reference solution alone. Journeys that always started wrong taught a
150-step student to reject its first attempt whatever its value, hence the journeys without a wrong
attempt. Attempts are in the base model's pretraining format (countdown_tiny's `pretrain.style` and
`max_value`). The held-out loss is on the test problems' data of the same variant; accuracy comes from
`configs/eval_countdown.py` with --config.model.checkpoint=<workdir>/hf_export. '' is 'journey'. `smoke`
(with either) trains a random tiny model 3 steps on 64 problems, for tests.
"""

import os

from r1jax.config import load_config_file, sft_config
from r1jax.data import journey


def get_config(arg: str | None = None):
    options = {item.strip() for item in (arg or "").split(",") if item.strip()}
    variants = options & set(journey.VARIANTS)
    if len(variants) > 1 or options - variants - {"smoke"}:
        raise ValueError(f"variant {arg!r}: give one of {', '.join(journey.VARIANTS)}, optionally with ',smoke'")
    base_run = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "countdown_tiny.py"))
    config = sft_config()
    config.model.update(name="tiny", checkpoint="workdir/countdown_tiny/base")  # name: the architecture
    config.data.synthetic = variants.pop() if variants else "journey"
    config.data.countdown = base_run.data.countdown
    config.data.journey.update(style=base_run.pretrain.style, max_value=base_run.pretrain.max_value)
    config.steps = 500
    config.batch_size = 8
    config.sft.seq_len = 256
    config.optimizer.update(learning_rate=5e-4, warmup_steps=10, weight_decay=0.01)
    config.eval.every = 100
    config.checkpoint_every = 100
    if "smoke" in options:
        config.model.update(checkpoint="", vocab_size=104)  # the character tokenizer's 102 tokens, rounded up
        config.tokenizer = "char"
        config.data.countdown.update(train_size=64, test_size=16)
        config.steps = 3
        config.sft.seq_len = 128
        config.eval.every = 2
        config.log_every = 1
        config.checkpoint_every = 1
    return config
