"""Builds what every mode needs from a validated run config: mesh, model, parameters, tokenizer."""

from __future__ import annotations

import os

import jax
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from r1jax import checkpoint, distributed, hf
from r1jax import model as model_lib
from r1jax import sharding
from r1jax.tokenizer import Tokenizer, load_tokenizer


def mesh_and_rules(config: ml_collections.ConfigDict) -> tuple[Mesh, sharding.Rules]:
    return sharding.make_mesh(dict(config.mesh)), sharding.get_rules(config.mesh.rules)


def param_shardings(model_config: model_lib.ModelConfig, mesh: Mesh, rules: sharding.Rules):
    """NamedShardings of the model's parameter tree under `rules`."""
    return sharding.param_shardings(model_lib.param_logical_axes(model_config), model_lib.param_shapes(model_config),
                                    mesh, rules)


def optimizer_state_shardings(optimizer: optax.GradientTransformation, params, mesh: Mesh):
    """Where a run keeps the optimizer state of `params` (arrays or ShapeDtypeStructs with shardings): Adam's
    moments on their parameters' shardings, the rest (step counts) replicated."""
    replicated = NamedSharding(mesh, PartitionSpec())
    return optax.tree_map_params(optimizer, lambda _, s: s, jax.eval_shape(optimizer.init, params),
                                 jax.tree.map(lambda x: x.sharding, params),
                                 transform_non_params=lambda _: replicated)


def init_optimizer_state(optimizer: optax.GradientTransformation, params, mesh: Mesh):
    """The optimizer state of `params`, born on `optimizer_state_shardings`: under jit without them, the zeros
    of Adam's moments would be replicated on every device (8x the memory on 8 devices)."""
    return jax.jit(optimizer.init, out_shardings=optimizer_state_shardings(optimizer, params, mesh))(params)


def model_config(config: ml_collections.ConfigDict, checkpoint: str = "") -> model_lib.ModelConfig:
    """The architecture from the config.json of `checkpoint`, else of `model.checkpoint`, else `model.name`,
    with the numerics of `model`."""
    numerics = dict(dtype=config.model.dtype, param_dtype=config.model.param_dtype, remat=config.model.remat,
                    scan_layers=config.model.scan_layers, attention_impl=config.model.attention_impl)
    checkpoint = checkpoint or config.model.checkpoint
    if checkpoint:
        return hf.load_config(checkpoint, **numerics)
    if config.model.vocab_size:
        numerics["vocab_size"] = config.model.vocab_size
    return model_lib.get_model_config(config.model.name, **numerics)


def load_or_init_params(config: ml_collections.ConfigDict, model_config: model_lib.ModelConfig, mesh: Mesh,
                        rules: sharding.Rules, checkpoint: str = "") -> model_lib.Params:
    """Parameters born on their shardings: read from the HF checkpoint (`checkpoint`, else `model.checkpoint`),
    or randomly initialised from `seed`."""
    shardings = param_shardings(model_config, mesh, rules)
    checkpoint = checkpoint or config.model.checkpoint
    if checkpoint:
        return hf.load_params(checkpoint, model_config, shardings)
    return model_lib.init_params(model_config, jax.random.key(config.seed), shardings)


def tokenizer(config: ml_collections.ConfigDict, workdir: str) -> Tokenizer:
    """`config.tokenizer` (a path, or 'char' written into the workdir), else the checkpoint's tokenizer."""
    from r1jax.data import char_tokenizer

    if config.tokenizer == "char":
        directory = os.path.join(workdir, "tokenizer")
        if distributed.is_main_process():
            char_tokenizer.write_char_tokenizer(directory)
        distributed.barrier("char tokenizer written")
        return load_tokenizer(directory)
    return load_tokenizer(config.tokenizer or config.model.checkpoint)


def export_final_model(workdir: str, model_config: model_lib.ModelConfig, params, tokenizer: Tokenizer) -> str:
    """Writes a finished run's model with its tokenizer to `<workdir>/hf_export` (every process takes part: the
    tensors are gathered in turn) and returns that path. A signal meanwhile waits for the export, which ends
    the run (an enclosing pipeline's guard still hears it and stops before its next stage)."""
    export_dir = os.path.join(workdir, "hf_export")
    with checkpoint.PreemptionGuard():
        hf.save_pretrained(model_config, params, export_dir, tokenizer=tokenizer)
    return export_dir
