"""Hugging Face checkpoints: `config.json` + `*.safetensors` (single file or sharded with an index).

Loading memory-maps every safetensors file and builds each device's shard of each parameter with
`jax.make_array_from_callback`, so the host only ever holds one shard at a time: a 7B model never
needs two copies in host memory. Saving streams one tensor at a time into files `transformers` loads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_dtypes
import numpy as np

from r1jax import distributed
from r1jax import model as model_lib
from r1jax.model import ModelConfig, Params, RopeScaling
from r1jax.tokenizer import Tokenizer

SAFETENSORS_DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
_DTYPE_NAMES = {v: k for k, v in SAFETENSORS_DTYPES.items()}
_TORCH_DTYPE_NAMES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}

ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
_MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}

_SHARD_BYTES = 4 * 2**30  # split saved checkpoints into files of at most this size
_WEIGHT_FILE = re.compile(r"model(?:-\d+-of-\d+)?\.safetensors(?:\.index\.json)?")


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be read as a supported model."""


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise CheckpointError(f"{path}: not valid JSON ({e}); the file may be truncated") from None


# ---------------------------------------------------------------------------------------------
# safetensors


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Every tensor of one file as a read-only memory-mapped array (nothing is read until used)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        try:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size - 8:  # e.g. a Git LFS pointer's text: reading that much would exhaust memory
                raise ValueError(f"its header length {header_len} exceeds the file's {size} bytes")
            header = json.loads(f.read(header_len))
        except (struct.error, ValueError) as e:  # ValueError: also JSONDecodeError, UnicodeDecodeError
            raise CheckpointError(f"{path}: not a safetensors file, or a truncated one ({e})") from None
    buffer = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        tensors[name] = buffer[start:end].view(SAFETENSORS_DTYPES[info["dtype"]]).reshape(info["shape"])
    return tensors


def write_safetensors(path: str, tensors: list[tuple[str, tuple[int, ...], np.dtype, Callable[[], np.ndarray]]]):
    """Writes (name, shape, dtype, produce) entries, calling each `produce` only when its bytes are due."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, dtype, _ in tensors:
        size = math.prod(shape) * np.dtype(dtype).itemsize
        header[name] = {"dtype": _DTYPE_NAMES[np.dtype(dtype)], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # keep tensor data 8-byte aligned
    # Write beside and rename: a reader never sees half a file, and maps of the old file stay valid.
    partial_path = path + ".partial"
    with open(partial_path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for name, shape, dtype, produce in tensors:
            array = np.ascontiguousarray(produce(), dtype=dtype)
            if array.shape != tuple(shape):
                raise ValueError(f"tensor {name}: produced shape {array.shape}, expected {tuple(shape)}")
            f.write(array.tobytes())
    os.replace(partial_path, path)


def read_checkpoint_tensors(path: str) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint directory, following `model.safetensors.index.json` when present."""
    index_path = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index_path):
        files = sorted(set(_read_json(index_path)["weight_map"].values()))
    else:
        files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no *.safetensors files (PyTorch .bin checkpoints are not supported)")
    tensors: dict[str, np.ndarray] = {}
    for filename in files:
        tensors.update(read_safetensors(os.path.join(path, filename)))
    return tensors


# ---------------------------------------------------------------------------------------------
# config.json


# transformers' LlamaConfig, Qwen2Config and Qwen3Config defaults, where they are not what the other keys imply.
_HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": dict(max_position_embeddings=2048),
    "qwen2": dict(max_position_embeddings=32_768),
    "qwen3": dict(max_position_embeddings=32_768, head_dim=128),
}


def config_from_hf(hf: dict[str, Any], **overrides) -> ModelConfig:
    """ModelConfig from a parsed HF `config.json`; unsupported features raise CheckpointError."""
    model_type = hf.get("model_type")
    family = {v: k for k, v in _MODEL_TYPES.items()}.get(model_type)
    if family is None:
        raise CheckpointError(f"model_type {model_type!r} is not supported; supported: {sorted(_MODEL_TYPES.values())}")
    if hf.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"hidden_act {hf['hidden_act']!r} is not supported (only silu)")
    if hf.get("use_sliding_window"):
        raise CheckpointError("use_sliding_window=true is not supported")
    if hf.get("mlp_bias"):
        raise CheckpointError("mlp_bias=true is not supported")
    if family != "qwen2" and hf.get("attention_bias"):  # Qwen2's q/k/v biases are built in, without this key
        raise CheckpointError(f"attention_bias=true is not supported for {model_type} (its o_proj bias is not "
                              "modelled)")
    # transformers >= 5 nests RoPE settings under rope_parameters; older files keep them at the top.
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    rope_theta = hf.get("rope_theta", rope.get("rope_theta", 10_000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type == "llama3":
        scaling = RopeScaling(float(rope["factor"]), float(rope["low_freq_factor"]), float(rope["high_freq_factor"]),
                              int(rope["original_max_position_embeddings"]))
    elif rope_type == "default":
        scaling = None
    else:
        raise CheckpointError(f"rope type {rope_type!r} is not supported (default and llama3 are)")
    num_heads = hf["num_attention_heads"]
    # A key the file leaves out takes its transformers config class's default.
    hf = {"head_dim": hf["hidden_size"] // num_heads, **_HF_DEFAULTS[family], **hf}
    config = ModelConfig(
        family=family,
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=num_heads,
        num_kv_heads=hf.get("num_key_value_heads") or num_heads,
        head_dim=hf["head_dim"] or hf["hidden_size"] // num_heads,
        rope_theta=float(rope_theta),
        rope_scaling=scaling,
        rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
        tie_embeddings=hf.get("tie_word_embeddings", False),
        qkv_bias=family == "qwen2",
        qk_norm=family == "qwen3",
        max_position_embeddings=hf["max_position_embeddings"],
    )
    return dataclasses.replace(config, **overrides)


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    if config.qkv_bias != (config.family == "qwen2"):
        raise CheckpointError(f"a {config.family} model with qkv_bias={config.qkv_bias} has no Hugging Face "
                              "equivalent (q/k/v biases are Qwen2's)")
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling is not None:
        rope.update(rope_type="llama3", **dataclasses.asdict(config.rope_scaling))
    hf = {
        "architectures": [ARCHITECTURES[config.family]],
        "model_type": _MODEL_TYPES[config.family],
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": rope if config.rope_scaling is not None else None,
        "rope_parameters": rope,
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": False,  # Llama's and Qwen3's would add an o_proj bias too; Qwen2 ignores it
        "mlp_bias": False,
        "use_sliding_window": False,
        "torch_dtype": _TORCH_DTYPE_NAMES.get(config.param_dtype, "float32"),
    }
    return hf


# ---------------------------------------------------------------------------------------------
# Tensor layout: how each r1jax parameter relates to HF tensors


@dataclasses.dataclass(frozen=True)
class _Layout:
    """One r1jax leaf: HF name (with `{i}` for a layer index) and the HF tensor's reshape+transpose."""

    hf_name: str
    hf_to_ours: Callable[[np.ndarray, ModelConfig], np.ndarray]
    ours_to_hf: Callable[[np.ndarray, ModelConfig], np.ndarray]


def _identity(x, _):
    return x


def _transpose(x, _):
    return x.T


def _heads_in(heads: Callable[[ModelConfig], int]) -> _Layout:
    # HF Linear weight (heads*head_dim, embed) <-> ours (embed, heads, head_dim)
    return dict(
        hf_to_ours=lambda x, c: x.T.reshape(c.hidden_size, heads(c), c.head_dim),
        ours_to_hf=lambda x, c: x.reshape(c.hidden_size, -1).T,
    )


def _bias(heads: Callable[[ModelConfig], int]):
    return dict(hf_to_ours=lambda x, c: x.reshape(heads(c), c.head_dim), ours_to_hf=lambda x, c: x.reshape(-1))


def _num_heads(c):
    return c.num_heads


def _num_kv_heads(c):
    return c.num_kv_heads


_LAYER = "model.layers.{i}."
_LAYOUTS: dict[tuple[str, ...], _Layout] = {
    ("embed",): _Layout("model.embed_tokens.weight", _identity, _identity),
    ("final_norm", "scale"): _Layout("model.norm.weight", _identity, _identity),
    ("lm_head",): _Layout("lm_head.weight", _transpose, _transpose),
    ("layers", "input_norm", "scale"): _Layout(_LAYER + "input_layernorm.weight", _identity, _identity),
    ("layers", "post_attention_norm", "scale"): _Layout(_LAYER + "post_attention_layernorm.weight", _identity, _identity),
    ("layers", "attn", "q_proj"): _Layout(_LAYER + "self_attn.q_proj.weight", **_heads_in(_num_heads)),
    ("layers", "attn", "k_proj"): _Layout(_LAYER + "self_attn.k_proj.weight", **_heads_in(_num_kv_heads)),
    ("layers", "attn", "v_proj"): _Layout(_LAYER + "self_attn.v_proj.weight", **_heads_in(_num_kv_heads)),
    ("layers", "attn", "q_bias"): _Layout(_LAYER + "self_attn.q_proj.bias", **_bias(_num_heads)),
    ("layers", "attn", "k_bias"): _Layout(_LAYER + "self_attn.k_proj.bias", **_bias(_num_kv_heads)),
    ("layers", "attn", "v_bias"): _Layout(_LAYER + "self_attn.v_proj.bias", **_bias(_num_kv_heads)),
    # HF o_proj (embed, heads*head_dim) <-> ours (heads, head_dim, embed)
    ("layers", "attn", "o_proj"): _Layout(
        _LAYER + "self_attn.o_proj.weight",
        hf_to_ours=lambda x, c: x.T.reshape(c.num_heads, c.head_dim, c.hidden_size),
        ours_to_hf=lambda x, c: x.reshape(-1, c.hidden_size).T),
    ("layers", "attn", "q_norm", "scale"): _Layout(_LAYER + "self_attn.q_norm.weight", _identity, _identity),
    ("layers", "attn", "k_norm", "scale"): _Layout(_LAYER + "self_attn.k_norm.weight", _identity, _identity),
    ("layers", "mlp", "gate_proj"): _Layout(_LAYER + "mlp.gate_proj.weight", _transpose, _transpose),
    ("layers", "mlp", "up_proj"): _Layout(_LAYER + "mlp.up_proj.weight", _transpose, _transpose),
    ("layers", "mlp", "down_proj"): _Layout(_LAYER + "mlp.down_proj.weight", _transpose, _transpose),
}


def _leaves_with_paths(tree: Params) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key_path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        yield tuple(k.key for k in key_path), leaf


def _hf_names(path: tuple[str, ...], config: ModelConfig) -> list[str]:
    name = _LAYOUTS[path].hf_name
    return [name.format(i=i) for i in range(config.num_layers)] if path[0] == "layers" else [name]


# ---------------------------------------------------------------------------------------------
# load / save


def load_config(path: str, **overrides) -> ModelConfig:
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise CheckpointError(f"{path}: no config.json (expected a Hugging Face model directory)")
    return config_from_hf(_read_json(config_path), **overrides)


def load_pretrained(path: str, dtype: str | None = None, *, shardings: Params | None = None, **config_overrides
                    ) -> tuple[ModelConfig, Params]:
    """Reads a HF model directory into `(config, params)`.

    `dtype` sets the parameter dtype (default: float32); `shardings` (a tree like the params, e.g. from
    `r1jax.sharding.param_shardings`) places every parameter directly on its devices, shard by shard.
    Other keyword arguments override config fields (compute dtype, remat, ...).
    """
    param_dtype = config_overrides.pop("param_dtype", None)
    if dtype and param_dtype and dtype != param_dtype:
        raise ValueError(f"dtype={dtype!r} and param_dtype={param_dtype!r} disagree; pass one of them")
    config = load_config(path, param_dtype=dtype or param_dtype or "float32", **config_overrides)
    return config, load_params(path, config, shardings)


def load_params(path: str, config: ModelConfig, shardings: Params | None = None) -> Params:
    """The parameters of the HF checkpoint at `path`, in `config.param_dtype`, on `shardings`."""
    tensors = read_checkpoint_tensors(path)
    shapes = model_lib.param_shapes(config)
    expected = {name for p, _ in _leaves_with_paths(shapes) for name in _hf_names(p, config)}
    missing = sorted(expected - set(tensors))
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise CheckpointError(f"{path}: missing tensors for a {config.family} model: {shown}")
    if shardings is None:
        device = jax.devices()[0]
        shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(device), shapes)
    flat_shardings = dict(_leaves_with_paths(shardings))

    params_flat = {}
    for path_key, shape in _leaves_with_paths(shapes):
        layout = _LAYOUTS[path_key]
        sources = [tensors[n] for n in _hf_names(path_key, config)]
        np_dtype = np.dtype(jax.numpy.dtype(config.param_dtype))

        def read_shard(index, sources=sources, layout=layout, stacked=path_key[0] == "layers"):
            # Reshape/transpose are views of the memory map: only the shard's bytes are read.
            if stacked:
                layer_index, rest = index[0], index[1:]
                per_layer = [layout.hf_to_ours(sources[i], config)[rest] for i in range(config.num_layers)[layer_index]]
                return np.stack(per_layer).astype(np_dtype)
            return np.asarray(layout.hf_to_ours(sources[0], config)[index]).astype(np_dtype)

        expected_shape = shape.shape[1:] if path_key[0] == "layers" else shape.shape
        got_shape = layout.hf_to_ours(sources[0], config).shape
        if tuple(got_shape) != tuple(expected_shape):
            raise CheckpointError(f"{path}: {_hf_names(path_key, config)[0]} has shape {sources[0].shape}, "
                                  f"which does not fit {path_key} {expected_shape} of this config")
        params_flat[path_key] = jax.make_array_from_callback(shape.shape, flat_shardings[path_key], read_shard)
    return _unflatten(params_flat)


def _unflatten(flat: dict[tuple[str, ...], Any]) -> Params:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


@jax.jit
def _layer_of(stacked: jax.Array, index: int) -> jax.Array:
    # A traced index: one compile per parameter shape, where `stacked[i]` compiles one per layer.
    return stacked[index]


def save_pretrained(config: ModelConfig, params: Params, path: str, *, dtype: str | None = None,
                    max_shard_bytes: int = _SHARD_BYTES, tokenizer: Tokenizer | None = None) -> None:
    """Writes `config.json` and safetensors that `transformers.AutoModelForCausalLM` loads; with `tokenizer`,
    its files too, and its BOS/EOS/pad ids in `config.json` (what `generate` falls back on).

    Parameters are fetched to the host one at a time (one layer's tensor at most), so saving a sharded model
    does not gather the whole model into host memory. In a multi-process run every process calls it: each
    tensor is gathered by all of them in turn, and only the main process writes.
    """
    writing = distributed.is_main_process()
    if writing:
        os.makedirs(path, exist_ok=True)
        # Weights of an earlier save in the other layout (one file or shards) would shadow the new ones.
        for filename in os.listdir(path):
            if _WEIGHT_FILE.fullmatch(filename):
                os.remove(os.path.join(path, filename))
    out_dtype = np.dtype(jax.numpy.dtype(dtype or config.param_dtype))
    entries, fetches = [], []
    for path_key, leaf in _leaves_with_paths(params):
        layout = _LAYOUTS[path_key]
        names = _hf_names(path_key, config)
        stacked = path_key[0] == "layers"
        for i, name in enumerate(names):
            per_layer_shape = leaf.shape[1:] if stacked else leaf.shape
            hf_shape = layout.ours_to_hf(np.empty(per_layer_shape, np.int8), config).shape

            def fetch(leaf=leaf, i=i, stacked=stacked):
                return np.asarray(distributed.to_host(_layer_of(leaf, i) if stacked else leaf))

            def produce(fetch=fetch, layout=layout):
                return layout.ours_to_hf(fetch(), config).astype(out_dtype)

            entries.append((name, tuple(hf_shape), out_dtype, produce))
            fetches.append(fetch)
    if not writing:
        for fetch in fetches:
            fetch()  # the gathers the main process makes while writing, in its order
        return

    files, current, current_bytes = [], [], 0
    for entry in entries:
        size = math.prod(entry[1]) * out_dtype.itemsize
        if current and current_bytes + size > max_shard_bytes:
            files.append(current)
            current, current_bytes = [], 0
        current.append(entry)
        current_bytes += size
    files.append(current)

    if len(files) == 1:
        write_safetensors(os.path.join(path, "model.safetensors"), files[0])
    else:
        weight_map = {}
        for n, group in enumerate(files):
            filename = f"model-{n + 1:05d}-of-{len(files):05d}.safetensors"
            write_safetensors(os.path.join(path, filename), group)
            weight_map.update({name: filename for name, *_ in group})
        total = sum(math.prod(e[1]) * out_dtype.itemsize for e in entries)
        with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    hf_config = config_to_hf(config)
    hf_config["torch_dtype"] = _TORCH_DTYPE_NAMES.get(str(out_dtype), "float32")
    if tokenizer is not None:
        eos_ids = list(tokenizer.eos_ids)
        hf_config.update(bos_token_id=tokenizer.bos_id, pad_token_id=tokenizer.pad_id,
                         eos_token_id=eos_ids[0] if len(eos_ids) == 1 else eos_ids or None)
        tokenizer.save(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(hf_config, f, indent=2)
