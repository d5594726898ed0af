"""Stage 0 of a from-scratch run: a tiny base model pretrained on synthetic Countdown traces.

DeepSeek-R1-Zero starts RL from a pretrained base model. On a CPU with no downloads there is none, so
a GRPO run whose `pretrain.steps` is positive makes one first: supervised training on
`r1jax.data.synthetic` traces of the task's training problems (the format and the arithmetic, with an
answer picked at random), saved in Hugging Face format under `<workdir>/base`. A later run in the same
workdir (a resume) loads that directory instead of training again.

While it trains, the training state is checkpointed every `pretrain.checkpoint_every` steps under
`<workdir>/base.checkpoints`. SIGTERM (or SIGINT) saves the step reached and stops the whole run (exit
code 75); the same command, like a rerun after a crash, continues from the latest checkpoint with the
batches an uninterrupted run gets, so the base model comes out the same. The checkpoints are deleted once
the base model is written.
"""

from __future__ import annotations

import json
import os
import shutil

import ml_collections

from r1jax import checkpoint as checkpoint_lib
from r1jax import distributed, hf, optim, sft
from r1jax import model as model_lib
from r1jax.data import synthetic
from r1jax.tokenizer import Tokenizer


def pretrain_config() -> ml_collections.ConfigDict:
    """The `pretrain` section of a GRPO config; `steps=0` starts RL from `model.checkpoint` or random init."""
    return ml_collections.ConfigDict(dict(
        steps=0,
        batch_size=4,  # packed rows per step
        seq_len=256,
        learning_rate=3e-3,
        warmup_steps=20,
        weight_decay=0.01,
        traces_per_example=4,
        min_attempts=1,
        max_attempts=4,
        style="chain",
        max_value=100,  # bound on every intermediate value of an attempt; 0 for none
        arithmetic_facts=0,  # single-operation drills mixed in (needs max_value)
        checkpoint_every=250,  # steps between saves of the training state (a stopped run continues there)
    ))


def base_model_dir(workdir: str) -> str:
    return os.path.join(workdir, "base")


def base_checkpoints_dir(workdir: str) -> str:
    """Where the pretraining state is checkpointed until the base model is written."""
    return os.path.join(workdir, "base.checkpoints")


def pretrain_base(config: ml_collections.ConfigDict, model_config: model_lib.ModelConfig, params: model_lib.Params,
                  tokenizer: Tokenizer, train_examples, workdir: str) -> str:
    """The directory of the pretrained base model, trained from `params` unless a finished one is there.

    `config` is the whole run config (its `pretrain` section and `seed`); `train_examples` are the
    task's training problems. The directory appears complete or not at all (written beside, then renamed).
    Training continues from the latest checkpoint in `base_checkpoints_dir`; raises
    `checkpoint.StoppedBySignal` when a signal stopped it (after saving).
    """
    out = base_model_dir(workdir)
    if not os.path.exists(os.path.join(out, "config.json")):
        _train_and_write_base(config, model_config, params, tokenizer, train_examples, out,
                              base_checkpoints_dir(workdir))
    if distributed.is_main_process():
        # Superseded by the base; also those of a run killed between writing the base and this removal.
        shutil.rmtree(base_checkpoints_dir(workdir), ignore_errors=True)
    return out


def _train_and_write_base(config: ml_collections.ConfigDict, model_config: model_lib.ModelConfig,
                          params: model_lib.Params, tokenizer: Tokenizer, train_examples, out: str,
                          checkpoints: str) -> None:
    p = config.pretrain
    pairs = synthetic.countdown_corpus(
        train_examples, traces_per_example=p.traces_per_example, seed=config.seed, min_attempts=p.min_attempts,
        max_attempts=p.max_attempts, style=p.style, max_value=p.max_value or None)
    if p.arithmetic_facts:
        max_number = max(n for example in train_examples for n in example["nums"])
        pairs += synthetic.arithmetic_facts(p.arithmetic_facts, max_number=max_number, max_value=p.max_value,
                                            seed=config.seed)
    optimizer_config = optim.optimizer_config(learning_rate=p.learning_rate, schedule="cosine",
                                              warmup_steps=p.warmup_steps, weight_decay=p.weight_decay)
    print(f"pretraining the base model: {p.steps} steps on {len(pairs)} synthetic traces", flush=True)
    # One checkpoint kept: a step directory appears only once fully written, so the one before adds nothing.
    with checkpoint_lib.Checkpointer(checkpoints, save_interval_steps=p.checkpoint_every,
                                     max_to_keep=1) as checkpointer:
        result = sft.train(model_config, params, pairs, tokenizer, steps=p.steps, batch_size=p.batch_size,
                           seq_len=p.seq_len, optimizer_config=optimizer_config, seed=config.seed,
                           log_every=max(p.steps // 5, 1), checkpointer=checkpointer)
    if result.stopped:
        raise checkpoint_lib.StoppedBySignal(
            f"pretraining stopped by a signal at step {len(result.losses)} of {p.steps}, saved in {checkpoints}; "
            "the same command continues it")
    partial = out + ".partial"
    if distributed.is_main_process():
        shutil.rmtree(partial, ignore_errors=True)
    # Every process: the tensors are gathered in turn.
    hf.save_pretrained(model_config, result.params, partial, tokenizer=tokenizer)
    if distributed.is_main_process():
        with open(os.path.join(partial, "pretrain.json"), "w") as f:
            json.dump(dict(steps=p.steps, seconds=result.seconds, traces=len(pairs), losses=result.losses), f)
        os.replace(partial, out)
    distributed.barrier("pretrained base written")  # the others read it next


def pretrain_seconds(workdir: str) -> float | None:
    """Wall time the base model's pretraining took (summed over the runs a stopped one took), if this workdir
    made one."""
    path = os.path.join(base_model_dir(workdir), "pretrain.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return float(json.load(f)["seconds"])
