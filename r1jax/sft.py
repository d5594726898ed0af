"""Supervised next-token training on (prompt, completion) text pairs, the loss on completion tokens only.

    result = sft.train(model_config, params, pairs, tokenizer, steps=300, batch_size=32, seq_len=256,
                       optimizer_config=optim.optimizer_config(learning_rate=3e-3), seed=0)
    result.params, result.losses

Pairs are tokenized (prompt + completion, the completion ending in whatever EOS text it carries),
then packed greedily into fixed-length rows: sequences sit side by side with their own segment ids
and positions restarting at 0, so attention never crosses a sequence and every step has one shape
(one compile). The loss is the mean over completion tokens of `-log p(token | its prefix)`, with
log-probs from `sampler.sequence_logprobs`, the same function the RL trainer uses.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from r1jax import optim, sampler
from r1jax.model import ModelConfig, Params
from r1jax.tokenizer import Tokenizer


class PackedRows(NamedTuple):
    """Fixed-length rows of packed sequences, all int32 / bool [rows, seq_len].

    Padding has segment id 0 and token `pad_id`; `loss_mask` is True on completion tokens.
    """

    tokens: np.ndarray
    positions: np.ndarray
    segment_ids: np.ndarray
    loss_mask: np.ndarray


class TrainResult(NamedTuple):
    params: Params
    losses: list[float]  # the training loss of every step


def encode_pairs(pairs: Sequence[tuple[str, str]], tokenizer: Tokenizer) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids) per pair; the two parts are encoded separately so the boundary is exact."""
    prompts = tokenizer.encode_batch([prompt for prompt, _ in pairs])
    completions = tokenizer.encode_batch([completion for _, completion in pairs])
    return list(zip(prompts, completions))


def pack(sequences: Sequence[tuple[list[int], list[int]]], seq_len: int, pad_id: int) -> PackedRows:
    """Packs (prompt ids, completion ids) sequences in order, starting a new row when the next does not fit."""
    rows: list[list[tuple[list[int], list[int]]]] = [[]]
    used = 0
    for i, (prompt, completion) in enumerate(sequences):
        length = len(prompt) + len(completion)
        if not prompt or not completion:
            raise ValueError(f"sequence {i} needs a non-empty prompt and completion")
        if length > seq_len:
            raise ValueError(f"sequence {i} has {length} tokens, more than seq_len={seq_len}")
        if used + length > seq_len:
            rows.append([])
            used = 0
        rows[-1].append((prompt, completion))
        used += length
    tokens = np.full((len(rows), seq_len), pad_id, np.int32)
    positions = np.zeros((len(rows), seq_len), np.int32)
    segment_ids = np.zeros((len(rows), seq_len), np.int32)
    loss_mask = np.zeros((len(rows), seq_len), bool)
    for r, row in enumerate(rows):
        start = 0
        for segment, (prompt, completion) in enumerate(row, start=1):
            end = start + len(prompt) + len(completion)
            tokens[r, start:end] = prompt + completion
            positions[r, start:end] = np.arange(end - start)
            segment_ids[r, start:end] = segment
            loss_mask[r, start + len(prompt):end] = True
            start = end
    return PackedRows(tokens, positions, segment_ids, loss_mask)


def completion_loss(config: ModelConfig, params: Params, rows: PackedRows) -> jax.Array:
    """Mean negative log-likelihood of the completion tokens of `rows` (arrays of one batch)."""
    # Column t holds log p(token t | row prefix); a segment's first column reads the previous segment's
    # last logits, but it is a prompt token, so the mask drops it.
    logprobs = sampler.sequence_logprobs(config, params, rows.tokens, rows.positions, rows.segment_ids)
    mask = rows.loss_mask.astype(jnp.float32)
    return -jnp.sum(logprobs * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def _train_step(config: ModelConfig, optimizer: optax.GradientTransformation, params: Params,
                opt_state: optax.OptState, rows: PackedRows) -> tuple[Params, optax.OptState, jax.Array]:
    loss, grads = jax.value_and_grad(completion_loss, argnums=1)(config, params, rows)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def train(model_config: ModelConfig, params: Params, pairs: Sequence[tuple[str, str]], tokenizer: Tokenizer, *,
          steps: int, batch_size: int, seq_len: int, optimizer_config: ml_collections.ConfigDict, seed: int = 0,
          log_every: int = 0) -> TrainResult:
    """`steps` AdamW steps on `batch_size` packed rows each, epochs reshuffled by `seed`.

    `log_every` > 0 prints the mean loss of the last `log_every` steps.
    """
    params = jax.tree.map(jnp.copy, params)  # the step donates its params; keep the caller's intact
    rng = np.random.default_rng(seed)
    encoded = encode_pairs(pairs, tokenizer)
    order = rng.permutation(len(encoded))  # shuffled before packing, so rows mix sequence kinds
    packed = pack([encoded[i] for i in order], seq_len, tokenizer.pad_id)
    num_rows = len(packed.tokens)
    if num_rows < batch_size:
        raise ValueError(f"the pairs fill {num_rows} rows of {seq_len} tokens, fewer than batch_size={batch_size}")
    optimizer, _ = optim.make_optimizer(optimizer_config, steps)
    opt_state = optimizer.init(params)
    losses: list[float] = []
    row_order = rng.permutation(num_rows)
    cursor = 0
    start = time.perf_counter()
    for step in range(steps):
        if cursor + batch_size > num_rows:  # a new epoch; the remainder of the last one is skipped
            row_order, cursor = rng.permutation(num_rows), 0
        batch = PackedRows(*(array[row_order[cursor:cursor + batch_size]] for array in packed))
        cursor += batch_size
        params, opt_state, loss = _train_step(model_config, optimizer, params, opt_state, batch)
        losses.append(float(loss))
        if log_every and (step + 1) % log_every == 0:
            print(f"sft step {step + 1}/{steps}: loss {np.mean(losses[-log_every:]):.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    return TrainResult(params, losses)
