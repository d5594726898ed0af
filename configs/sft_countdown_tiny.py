"""A student SFT'd on the tiny Countdown policy's verified traces (R1-Distill on a CPU, about 2 minutes).

    python -m r1jax.main --config configs/distill_countdown_tiny.py     # first: the traces
    python -m r1jax.main --config configs/sft_countdown_tiny.py
    python -m r1jax.main --config configs/sft_countdown_tiny.py:kl --workdir workdir/sft_countdown_tiny_kl

The student starts from the main job's pretrained base model (`workdir/countdown_tiny/base`, made by
`python -m r1jax.main --config configs/countdown_tiny.py`), which writes attempts but stops its search at
random; the data is `mode: distill`'s output, one correct trace per training problem, 256 of them held out
for the evaluation loss. Variant `kl` adds logit distillation: the forward KL from the teacher policy
(`workdir/countdown_tiny/hf_export`, same character tokenizer) on the same tokens, weight 1.
Accuracy: `python -m r1jax.main --config configs/eval_countdown.py --config.model.checkpoint=<workdir>/hf_export`.
"""

from r1jax.config import sft_config


def get_config(arg: str | None = None):
    config = sft_config()
    config.model.update(name="tiny", checkpoint="workdir/countdown_tiny/base")  # name: the architecture
    config.data.update(train_file="workdir/distill_countdown_tiny/distill.jsonl", eval_size=256)
    config.steps = 300
    config.batch_size = 8
    config.sft.seq_len = 256
    config.optimizer.update(learning_rate=5e-4, warmup_steps=10, weight_decay=0.01)
    config.eval.every = 50
    config.checkpoint_every = 50
    if arg == "kl":
        config.sft.update(teacher_checkpoint="workdir/countdown_tiny/hf_export", kl_weight=1.0)
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of configs/sft_countdown_tiny.py; use '' or 'kl'")
    return config
