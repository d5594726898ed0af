"""Train steps lowered ahead of time from abstract inputs: no weights, data or accelerator needed.

`lower_train_step` builds the train step of a `grpo` or `sft` config as its run does and lowers it with
`jax.ShapeDtypeStruct` inputs at the config's sizes that carry the shardings the run uses. The tests lower
every shipped config with it; `tools/aot_compile.py` compiles it for a target machine and prints the
memory each device needs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from r1jax import model as model_lib
from r1jax import optim, runtime, sampler, sft, sharding
from r1jax.rl import trainer

TRAIN_MODES = ("grpo", "sft")


class LoweredStep(NamedTuple):
    lowered: jax.stages.Lowered
    state: dict[str, Any]  # the abstract training state it was lowered with
    tokens_per_step: int  # tokens of the batch one call trains on
    seq_len: int  # their row length


def _abstract(tree: Any, shardings: Any) -> Any:
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def abstract_state(model_config: model_lib.ModelConfig, optimizer: optax.GradientTransformation, mesh: Mesh,
                   rules: sharding.Rules, *, with_rng: bool) -> dict[str, Any]:
    """`{"params", "opt_state", "step"}` (and `"rng"`, as GRPO keeps one) on the shardings a run gives them."""
    replicated = NamedSharding(mesh, PartitionSpec())
    params = _abstract(model_lib.param_shapes(model_config), runtime.param_shardings(model_config, mesh, rules))
    opt_state = _abstract(jax.eval_shape(optimizer.init, params),
                          runtime.optimizer_state_shardings(optimizer, params, mesh))
    state = dict(params=params, opt_state=opt_state,
                 step=jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated))
    if with_rng:
        state["rng"] = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated)
    return state


def _grpo_minibatch(config: ml_collections.ConfigDict, model_config: model_lib.ModelConfig) -> dict[str, np.ndarray]:
    """A minibatch as GRPORun.train_on builds it, at the config's sizes: prompts as long as allowed."""
    rows, new_tokens = config.grpo.minibatch_size, config.rollout.max_new_tokens
    prompt_cap = config.rollout.max_prompt_len or model_config.max_position_embeddings
    prompt_len = config.rollout.max_prompt_len or 64  # without a cap, a short bucket: any length traces alike
    completions = sampler.SampleResult(np.zeros((rows, new_tokens), np.int32), np.full(rows, new_tokens),
                                       np.zeros((rows, new_tokens), np.float32), np.ones(rows, bool))
    rollout = trainer.Rollout([{}] * rows, [[0] * prompt_len] * rows, completions, [""] * rows, {}, np.zeros(rows))
    batch = trainer.training_batch(rollout, np.zeros(rows), mask_truncated=config.grpo.mask_truncated, pad_id=0,
                                   prompt_bucket_cap=prompt_cap)
    if config.grpo.beta > 0:  # the reference policy's log-probs, added by train_on
        batch["ref_logp"] = batch["old_logp"]
    return batch


def lower_train_step(config: ml_collections.ConfigDict, model_config: model_lib.ModelConfig, mesh: Mesh,
                     rules: sharding.Rules) -> LoweredStep:
    """The config's train step (mode grpo or sft) lowered on `mesh`; `model_config` as `runtime.model_config`
    gives it (an sft teacher's comes from `sft.teacher_checkpoint`)."""
    optimizer, schedule = optim.make_optimizer(config.optimizer, config.steps)
    state = abstract_state(model_config, optimizer, mesh, rules, with_rng=config.mode == "grpo")
    state_shardings = jax.tree.map(lambda x: x.sharding, state)
    scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=NamedSharding(mesh, PartitionSpec()))

    def batch_of(arrays):
        return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding.batch_sharding(mesh, rules, v.ndim))
                for k, v in arrays.items()}

    if config.mode == "grpo":
        batch = batch_of(_grpo_minibatch(config, model_config))
        train_step = trainer.make_train_step(model_config, config, optimizer, schedule, state_shardings)
        args = (state, batch, scalar, scalar)
        tokens = batch["tokens"]
    elif config.mode == "sft":
        shape = (config.batch_size, config.sft.seq_len)
        rows = sft.PackedRows(**batch_of(dict(tokens=np.zeros(shape, np.int32), positions=np.zeros(shape, np.int32),
                                              segment_ids=np.zeros(shape, np.int32),
                                              loss_mask=np.zeros(shape, bool))))
        teacher_config = teacher_params = None
        if config.sft.teacher_checkpoint:
            teacher_config = runtime.model_config(config, checkpoint=config.sft.teacher_checkpoint)
            teacher_params = _abstract(model_lib.param_shapes(teacher_config),
                                       runtime.param_shardings(teacher_config, mesh, rules))
        train_step = sft.make_train_step(model_config, optimizer, schedule, state_shardings,
                                         microbatch_size=config.sft.microbatch_size, teacher_config=teacher_config,
                                         kl_weight=config.sft.kl_weight)
        args = (state, teacher_params, rows, scalar)
        tokens = rows.tokens
    else:
        raise ValueError(f"mode {config.mode!r} has no train step; modes with one: {', '.join(TRAIN_MODES)}")
    with sharding.use_mesh(mesh, rules):
        lowered = train_step.lower(*args)
    return LoweredStep(lowered, state, int(np.prod(tokens.shape)), tokens.shape[1])
