"""Optimizer, learning-rate schedule (from a config's `optimizer` section) and gradient accumulation,
shared by every trainer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax import tree_util

from r1jax.model import Params

SCHEDULES = ("cosine", "constant")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def optimizer_config(**overrides) -> ml_collections.ConfigDict:
    """Defaults for the `optimizer` section of a run config."""
    config = ml_collections.ConfigDict(dict(
        learning_rate=1e-6,
        schedule="constant",  # after warmup; "cosine" decays to learning_rate * end_factor at `total_steps`
        warmup_steps=0,  # in optimizer updates: a GRPO step makes num_iterations x (rows / minibatch_size) of them
        end_factor=0.1,
        b1=0.9,
        b2=0.99,  # torch and HF Trainer default to 0.999 (verl, TRL): set it when reproducing their runs
        eps=1e-8,
        weight_decay=0.0,
        max_grad_norm=1.0,  # 0 disables clipping
    ))
    config.update(overrides)
    return config


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    if config.schedule not in SCHEDULES:
        raise ValueError(f"optimizer.schedule {config.schedule!r} is not one of {SCHEDULES}")
    peak = config.learning_rate
    if config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=peak, warmup_steps=config.warmup_steps,
            decay_steps=max(total_steps, config.warmup_steps + 1), end_value=peak * config.end_factor)
    if config.warmup_steps == 0:
        return optax.constant_schedule(peak)
    return optax.join_schedules([optax.linear_schedule(0.0, peak, config.warmup_steps), optax.constant_schedule(peak)],
                                [config.warmup_steps])


def _decays(path, _) -> bool:
    # Norm scales and biases are not decayed (the usual AdamW practice); every matrix is.
    names = [getattr(k, "key", "") for k in path]
    return not any("norm" in n or n.endswith("_bias") for n in names)


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with warmup + cosine/constant schedule and global-norm clipping."""
    schedule = learning_rate_schedule(config, total_steps)
    adamw = optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps, weight_decay=config.weight_decay,
                        mask=decay_mask)
    if config.max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adamw), schedule
    return adamw, schedule


def decay_mask(params: Params) -> Params:
    """Which parameters get weight decay (exposed for tests and logging)."""
    return tree_util.tree_map_with_path(_decays, params)


def sum_over_microbatches(fn: Callable[[Any], Any], batch: Any, microbatch_size: int) -> tuple[Any, int]:
    """`(sum of fn(microbatch) over the microbatches of batch, their count)`: gradient accumulation.

    `batch` is a pytree of arrays with rows on axis 0, `fn` returns any pytree of arrays (e.g. a
    `value_and_grad` result). `microbatch_size` 0, or at least the row count, is one call. The slices run
    in a `lax.scan`, so only one slice's activations are live. Slice i takes rows i, i + count, ...: each
    keeps an even share of every data shard. A loss that is a sum over rows divided by a count fixed for
    the whole batch sums exactly; one that averages per call needs dividing by the count.
    """
    rows = jax.tree.leaves(batch)[0].shape[0]
    if not microbatch_size or microbatch_size >= rows:
        return fn(batch), 1
    if rows % microbatch_size:
        raise ValueError(f"microbatch_size={microbatch_size} does not divide the batch's {rows} rows")
    count = rows // microbatch_size
    microbatches = jax.tree.map(lambda x: x.reshape(microbatch_size, count, *x.shape[1:]).swapaxes(0, 1), batch)

    def add(total, microbatch):
        return jax.tree.map(jnp.add, total, fn(microbatch)), None

    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype),
                         jax.eval_shape(fn, jax.tree.map(lambda x: x[0], microbatches)))
    total, _ = jax.lax.scan(add, zeros, microbatches)
    return total, count
