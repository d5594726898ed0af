"""Run configs: the shared base every `configs/*.py` starts from, and validation before any compile.

Validation runs before anything is compiled or written: each problem is a `ConfigError` whose
one-line message names the key and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import jax.numpy as jnp
import ml_collections

from r1jax import model as model_lib
from r1jax import sharding

DTYPES = ("float32", "bfloat16", "float16")


class ConfigError(ValueError):
    """A config that cannot run; the message names the key and how to fix it."""


def base_config() -> ml_collections.ConfigDict:
    """Sections shared by every mode. Config files override fields; `--config.a.b=v` overrides them."""
    config = ml_collections.ConfigDict()
    config.mode = ""
    config.seed = 0
    config.model = ml_collections.ConfigDict(dict(
        name="tiny",  # a key of r1jax.model.MODEL_CONFIGS, used when `checkpoint` is empty
        checkpoint="",  # a Hugging Face model directory; its config.json decides the architecture
        dtype="float32",  # compute dtype
        param_dtype="float32",
        remat="none",
        scan_layers=True,
        attention_impl="xla",
    ))
    config.mesh = ml_collections.ConfigDict(dict(
        data=-1,  # -1: the devices the other axes leave
        fsdp=1,
        tensor=1,
        rules="fsdp_tensor",  # a preset of r1jax.sharding.RULE_PRESETS, or a list of (logical, mesh axes)
    ))
    return config


def _fail(key: str, message: str):
    raise ConfigError(f"config.{key}: {message}")


def validate(config: ml_collections.ConfigDict, *, known_modes: Iterable[str], num_devices: int) -> None:
    """Checks everything that can be checked without compiling; raises ConfigError on the first problem."""
    known_modes = sorted(known_modes)
    mode = config.get("mode", "")
    if mode not in known_modes:
        _fail("mode", f"{mode!r} is not a mode; set --config.mode to one of {', '.join(known_modes)}")
    _validate_model(config.model)
    try:
        mesh_shape = sharding.resolve_mesh_shape(dict(config.mesh), num_devices)
    except ValueError as e:
        _fail("mesh", f"{e}; make data*fsdp*tensor equal the device count, or set one axis to -1 to fill")
    try:
        rules = sharding.get_rules(config.mesh.rules)
    except ValueError as e:
        _fail("mesh.rules", str(e))
    batch_ways = sharding.data_parallel_size(dict(zip(sharding.MESH_AXES, mesh_shape)), rules)
    for key in ("batch_size", "eval_batch_size"):
        value = config.get(key)
        if value is None:
            continue
        if value <= 0:
            _fail(key, f"{value} must be positive")
        if value % batch_ways:
            _fail(key, f"{value} is not a multiple of the {batch_ways} ways the mesh splits the batch "
                       f"(mesh {dict(zip(sharding.MESH_AXES, mesh_shape))}); use a multiple of {batch_ways}")


def _validate_model(model: ml_collections.ConfigDict) -> None:
    if model.checkpoint:
        if not os.path.isdir(model.checkpoint):
            _fail("model.checkpoint", f"{model.checkpoint!r} is not a directory; point it at a Hugging Face "
                                      "model directory (config.json + *.safetensors) or set it to '' to use model.name")
        if not os.path.isfile(os.path.join(model.checkpoint, "config.json")):
            _fail("model.checkpoint", f"{model.checkpoint!r} has no config.json; it must be a Hugging Face model directory")
    elif model.name not in model_lib.MODEL_CONFIGS:
        _fail("model.name", f"{model.name!r} is not a known model; choose one of "
                            f"{', '.join(sorted(model_lib.MODEL_CONFIGS))} or set model.checkpoint")
    for key in ("dtype", "param_dtype"):
        if model[key] not in DTYPES:
            _fail(f"model.{key}", f"{model[key]!r} is not one of {', '.join(DTYPES)}")
    if model.remat not in model_lib.REMAT_POLICIES:
        _fail("model.remat", f"{model.remat!r} is not one of {', '.join(model_lib.REMAT_POLICIES)}")
    if model.attention_impl not in ("xla", "cudnn"):
        _fail("model.attention_impl", f"{model.attention_impl!r} is not 'xla' or 'cudnn'")
    if model.attention_impl == "cudnn" and jnp.dtype(model.dtype) == jnp.float32:
        _fail("model.attention_impl", "cudnn attention needs dtype bfloat16 or float16; set --config.model.dtype=bfloat16")
