"""Decoder-only transformer covering the Llama 3.x, Qwen2/2.5 and Qwen3 families.

One Flax Linen module stack, used through pure functions of `(config, params, ...)`:

- `forward(config, params, tokens_BxL) -> logits_BxLxV`: full causal pass, no cache.
- `apply(...)`: the general pass behind `forward` and the sampler: explicit positions and
  segment ids (packing, left padding), and an optional static-shape KV cache. With a cache the
  layers run one by one on per-layer weights (`unstack_layers`) and per-layer caches.

Family differences are config flags: q/k/v bias (Qwen2), q/k RMSNorm per head (Qwen3), llama3
RoPE frequency scaling (Llama 3.1+), tied embeddings. Parameters are stored layer-stacked
(leading `layers` axis) and run through `nn.scan`, which keeps compile time flat in depth;
`scan_layers=False` unrolls the same parameters. Every parameter carries logical axis names
(`vocab`, `embed`, `mlp`, `heads`, `kv_heads`, `head_dim`, `layers`, `norm`); `r1jax.sharding`
maps them onto a mesh.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

Params = Any  # nested dict of arrays


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama 3 frequency-dependent RoPE scaling (the `rope_type: llama3` of HF configs)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and numerics of one model. Hashable, so jitted functions take it as static."""

    family: str  # "llama" | "qwen2" | "qwen3": decides the HF architecture written on save
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10_000.0
    rope_scaling: RopeScaling | None = None
    rms_norm_eps: float = 1e-6
    tie_embeddings: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    max_position_embeddings: int = 32_768
    # Numerics and compilation; not part of the architecture.
    dtype: str = "float32"  # compute dtype of matmuls
    param_dtype: str = "float32"
    remat: str = "none"  # "none" | "full" | "dots_saveable" | "dots_with_no_batch_dims_saveable"
    scan_layers: bool = True
    attention_impl: str = "xla"  # "xla" | "cudnn" (GPU, bf16/f16 only)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"model family {self.family!r} is not one of {sorted(FAMILIES)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat={self.remat!r} is not one of {sorted(REMAT_POLICIES)}")
        if self.attention_impl not in ("xla", "cudnn"):
            raise ValueError(f"attention_impl={self.attention_impl!r} is not 'xla' or 'cudnn'")

    def num_params(self) -> int:
        shapes = jax.eval_shape(functools.partial(_init_unboxed, self), jax.random.key(0))
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


FAMILIES = ("llama", "qwen2", "qwen3")

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}

_QWEN25 = dict(family="qwen2", vocab_size=151_936, rope_theta=1_000_000.0, rms_norm_eps=1e-6, qkv_bias=True,
               max_position_embeddings=32_768)
_QWEN3 = dict(family="qwen3", vocab_size=151_936, rope_theta=1_000_000.0, rms_norm_eps=1e-6, qk_norm=True,
              head_dim=128, max_position_embeddings=40_960)
_LLAMA3 = dict(family="llama", vocab_size=128_256, rope_theta=500_000.0, rms_norm_eps=1e-5,
               max_position_embeddings=131_072)

MODEL_CONFIGS: dict[str, ModelConfig] = {
    "qwen2.5-0.5b": ModelConfig(**_QWEN25, hidden_size=896, intermediate_size=4864, num_layers=24, num_heads=14,
                                num_kv_heads=2, head_dim=64, tie_embeddings=True),
    "qwen2.5-1.5b": ModelConfig(**_QWEN25, hidden_size=1536, intermediate_size=8960, num_layers=28, num_heads=12,
                                num_kv_heads=2, head_dim=128, tie_embeddings=True),
    "qwen2.5-3b": ModelConfig(**_QWEN25, hidden_size=2048, intermediate_size=11008, num_layers=36, num_heads=16,
                              num_kv_heads=2, head_dim=128, tie_embeddings=True),
    "qwen2.5-7b": ModelConfig(**{**_QWEN25, "vocab_size": 152_064}, hidden_size=3584, intermediate_size=18944,
                              num_layers=28, num_heads=28, num_kv_heads=4, head_dim=128),
    "qwen3-0.6b": ModelConfig(**_QWEN3, hidden_size=1024, intermediate_size=3072, num_layers=28, num_heads=16,
                              num_kv_heads=8, tie_embeddings=True),
    "qwen3-1.7b": ModelConfig(**_QWEN3, hidden_size=2048, intermediate_size=6144, num_layers=28, num_heads=16,
                              num_kv_heads=8, tie_embeddings=True),
    "qwen3-4b": ModelConfig(**_QWEN3, hidden_size=2560, intermediate_size=9728, num_layers=36, num_heads=32,
                            num_kv_heads=8, tie_embeddings=True),
    "qwen3-8b": ModelConfig(**_QWEN3, hidden_size=4096, intermediate_size=12288, num_layers=36, num_heads=32,
                            num_kv_heads=8),
    "llama3.2-1b": ModelConfig(**_LLAMA3, hidden_size=2048, intermediate_size=8192, num_layers=16, num_heads=32,
                               num_kv_heads=8, head_dim=64, tie_embeddings=True,
                               rope_scaling=RopeScaling(32.0, 1.0, 4.0, 8192)),
    "llama3.2-3b": ModelConfig(**_LLAMA3, hidden_size=3072, intermediate_size=8192, num_layers=28, num_heads=24,
                               num_kv_heads=8, head_dim=128, tie_embeddings=True,
                               rope_scaling=RopeScaling(32.0, 1.0, 4.0, 8192)),
    "llama3.1-8b": ModelConfig(**_LLAMA3, hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32,
                               num_kv_heads=8, head_dim=128, rope_scaling=RopeScaling(8.0, 1.0, 4.0, 8192)),
    # Tiny models for tests and CPU demos, one per family.
    "tiny": ModelConfig(family="qwen2", vocab_size=512, hidden_size=128, intermediate_size=384, num_layers=4,
                        num_heads=4, num_kv_heads=2, head_dim=32, qkv_bias=True, tie_embeddings=True,
                        max_position_embeddings=2048),
    "tiny-llama": ModelConfig(family="llama", vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=2,
                              num_heads=4, num_kv_heads=2, head_dim=16, rope_theta=500_000.0, rms_norm_eps=1e-5,
                              rope_scaling=RopeScaling(8.0, 1.0, 4.0, 64), max_position_embeddings=1024),
    "tiny-qwen3": ModelConfig(family="qwen3", vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=2,
                              num_heads=4, num_kv_heads=1, head_dim=32, qk_norm=True, tie_embeddings=True,
                              rope_theta=1_000_000.0, max_position_embeddings=1024),
}


def get_model_config(name: str, **overrides) -> ModelConfig:
    """A named config, optionally with fields replaced (e.g. `dtype="bfloat16"`)."""
    if name not in MODEL_CONFIGS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(MODEL_CONFIGS))}")
    return dataclasses.replace(MODEL_CONFIGS[name], **overrides)


# ---------------------------------------------------------------------------------------------
# Rotary embeddings


def rope_inverse_frequencies(config: ModelConfig) -> np.ndarray:
    """Per-pair rotation frequencies, float64 on the host (traced into jitted code as constants)."""
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    scaling = config.rope_scaling
    if scaling is None:
        return inv_freq
    # Llama 3: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
    wavelen = 2 * np.pi / inv_freq
    low_freq_wavelen = scaling.original_max_position_embeddings / scaling.low_freq_factor
    high_freq_wavelen = scaling.original_max_position_embeddings / scaling.high_freq_factor
    smooth = (scaling.original_max_position_embeddings / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor)
    blended = (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq
    return np.where(wavelen > low_freq_wavelen, inv_freq / scaling.factor,
                    np.where(wavelen < high_freq_wavelen, inv_freq, blended))


def apply_rope(x_BxTxNxH: jax.Array, positions_BxT: jax.Array, inv_freq: np.ndarray) -> jax.Array:
    """Rotates halves (HF's `rotate_half` convention, not interleaved pairs). Angles in float32."""
    angles_BxTxF = positions_BxT[..., None].astype(jnp.float32) * jnp.asarray(inv_freq, jnp.float32)
    cos = jnp.cos(angles_BxTxF)[:, :, None, :].astype(x_BxTxNxH.dtype)
    sin = jnp.sin(angles_BxTxF)[:, :, None, :].astype(x_BxTxNxH.dtype)
    x1, x2 = jnp.split(x_BxTxNxH, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


# ---------------------------------------------------------------------------------------------
# Modules


def _param(module: nn.Module, name: str, init, shape: tuple[int, ...], axes: tuple[str, ...], dtype) -> jax.Array:
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, dtype)


def _dense_init(std: float = 0.02):
    return nn.initializers.normal(stddev=std)


def rms_norm(x: jax.Array, scale: jax.Array, eps: float) -> jax.Array:
    """RMSNorm in float32, cast back before the scale (as HF Llama/Qwen do)."""
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return scale.astype(x.dtype) * normed.astype(x.dtype)


class RMSNorm(nn.Module):
    eps: float
    param_dtype: Any
    axis_name: str = "norm"

    @nn.compact
    def __call__(self, x):
        scale = _param(self, "scale", nn.initializers.ones, (x.shape[-1],), (self.axis_name,), self.param_dtype)
        return rms_norm(x, scale, self.eps)


def cached_attention(q_BxTxNxH: jax.Array, k_BxKxHxS: jax.Array, v_BxKxSxH: jax.Array, mask_BxTxS: jax.Array
                     ) -> jax.Array:
    """Grouped-query attention of T new tokens over a cache's S slots: `out_BxTxNxH`.

    The same math as `jax.nn.dot_product_attention` (float32 scores and softmax, probabilities cast to
    the values' dtype), written so both matmuls find their operands in the cache's own layout: keys
    with slots minor, values with head_dim minor. Against a `[B, S, K, H]` cache, XLA copies each
    layer's keys and values into that order at every decode step, which costs more than the matmuls.
    """
    B, T, N, H = q_BxTxNxH.shape
    K = k_BxKxHxS.shape[1]
    q_BxKxGxTxH = jnp.transpose(q_BxTxNxH.reshape(B, T, K, N // K, H), (0, 2, 3, 1, 4))
    scores_BxKxGxTxS = jnp.einsum("bkgth,bkhs->bkgts", q_BxKxGxTxH, k_BxKxHxS,
                                  preferred_element_type=jnp.float32) / np.sqrt(H).astype(np.float32)
    scores_BxKxGxTxS = jnp.where(mask_BxTxS[:, None, None], scores_BxKxGxTxS, jnp.finfo(jnp.float32).min)
    probs_BxKxGxTxS = jax.nn.softmax(scores_BxKxGxTxS, axis=-1).astype(v_BxKxSxH.dtype)
    out_BxKxGxTxH = jnp.einsum("bkgts,bksh->bkgth", probs_BxKxGxTxS, v_BxKxSxH)
    return jnp.transpose(out_BxKxGxTxH, (0, 3, 1, 2, 4)).reshape(B, T, N, H)


class Attention(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x_BxTxE, positions_BxT, mask_BxTxS, layer_cache, write_index):
        cfg = self.config
        dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        E, N, K, H = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim

        def project(name, heads, heads_axis):
            kernel = _param(self, name, _dense_init(), (E, heads, H), ("embed", heads_axis, "head_dim"), pdtype)
            y = jnp.einsum("bte,enh->btnh", x_BxTxE, kernel.astype(dtype))
            if cfg.qkv_bias:
                bias = _param(self, name.replace("proj", "bias"), nn.initializers.zeros, (heads, H),
                              (heads_axis, "head_dim"), pdtype)
                y = y + bias.astype(dtype)
            return y

        q_BxTxNxH = project("q_proj", N, "heads")
        k_BxTxKxH = project("k_proj", K, "kv_heads")
        v_BxTxKxH = project("v_proj", K, "kv_heads")
        if cfg.qk_norm:
            q_BxTxNxH = RMSNorm(cfg.rms_norm_eps, pdtype, "head_dim", name="q_norm")(q_BxTxNxH)
            k_BxTxKxH = RMSNorm(cfg.rms_norm_eps, pdtype, "head_dim", name="k_norm")(k_BxTxKxH)
        inv_freq = rope_inverse_frequencies(cfg)
        q_BxTxNxH = apply_rope(q_BxTxNxH, positions_BxT, inv_freq)
        k_BxTxKxH = apply_rope(k_BxTxKxH, positions_BxT, inv_freq)

        if layer_cache is not None:
            k_BxKxHxS, v_BxKxSxH = layer_cache
            write_index = jnp.asarray(write_index, jnp.int32)
            k_BxKxHxS = jax.lax.dynamic_update_slice(
                k_BxKxHxS, jnp.transpose(k_BxTxKxH, (0, 2, 3, 1)).astype(k_BxKxHxS.dtype), (0, 0, 0, write_index))
            v_BxKxSxH = jax.lax.dynamic_update_slice(
                v_BxKxSxH, jnp.transpose(v_BxTxKxH, (0, 2, 1, 3)).astype(v_BxKxSxH.dtype), (0, 0, write_index, 0))
            out_BxTxNxH = cached_attention(q_BxTxNxH, k_BxKxHxS.astype(dtype), v_BxKxSxH.astype(dtype), mask_BxTxS)
            new_cache = (k_BxKxHxS, v_BxKxSxH)
        else:
            out_BxTxNxH = jax.nn.dot_product_attention(q_BxTxNxH, k_BxTxKxH, v_BxTxKxH, mask=mask_BxTxS[:, None],
                                                       implementation=cfg.attention_impl)
            new_cache = None
        out_BxTxNxH = nn.with_logical_constraint(
            out_BxTxNxH, ("activation_batch", "activation_length", "activation_heads", None))
        o_kernel = _param(self, "o_proj", _dense_init(), (N, H, E), ("heads", "head_dim", "embed"), pdtype)
        # Contracts (heads, head_dim) in the kernel's memory order. jnp.einsum would sort the contracted
        # letters to (head_dim, heads), and XLA then transposes the kernel at every call.
        out_BxTxE = jax.lax.dot_general(out_BxTxNxH, o_kernel.astype(dtype), (((2, 3), (0, 1)), ((), ())))
        return out_BxTxE, new_cache


class MLP(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x_BxTxE):
        cfg = self.config
        dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        E, F = cfg.hidden_size, cfg.intermediate_size
        gate = _param(self, "gate_proj", _dense_init(), (E, F), ("embed", "mlp"), pdtype)
        up = _param(self, "up_proj", _dense_init(), (E, F), ("embed", "mlp"), pdtype)
        down = _param(self, "down_proj", _dense_init(), (F, E), ("mlp", "embed"), pdtype)
        h_BxTxF = jax.nn.silu(x_BxTxE @ gate.astype(dtype)) * (x_BxTxE @ up.astype(dtype))
        h_BxTxF = nn.with_logical_constraint(h_BxTxF, ("activation_batch", "activation_length", "activation_mlp"))
        return h_BxTxF @ down.astype(dtype)


class DecoderLayer(nn.Module):
    """Pre-norm block. Scan signature: carry `(x, layer_cache)`, broadcast attention inputs; no scanned inputs.

    `layer_cache` is None in the scanned full pass, or this layer's `(k_BxKxHxS, v_BxKxSxH)` in the
    cached pass, which applies the layers one by one (`apply`)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, carry, positions_BxT, mask_BxTxS, write_index):
        x_BxTxE, layer_cache = carry
        cfg = self.config
        pdtype = jnp.dtype(cfg.param_dtype)
        h = RMSNorm(cfg.rms_norm_eps, pdtype, name="input_norm")(x_BxTxE)
        attn_out, new_cache = Attention(cfg, name="attn")(h, positions_BxT, mask_BxTxS, layer_cache, write_index)
        x_BxTxE = x_BxTxE + attn_out
        h = RMSNorm(cfg.rms_norm_eps, pdtype, name="post_attention_norm")(x_BxTxE)
        x_BxTxE = x_BxTxE + MLP(cfg, name="mlp")(h)
        x_BxTxE = nn.with_logical_constraint(x_BxTxE, ("activation_batch", "activation_length", "activation_embed"))
        return (x_BxTxE, new_cache), None


class Transformer(nn.Module):
    """Embedding, scanned decoder layers, final norm. Returns the final hidden states (not logits)."""

    config: ModelConfig

    def setup(self):
        cfg = self.config
        pdtype = jnp.dtype(cfg.param_dtype)
        self.embed = self.param("embed", nn.with_logical_partitioning(_dense_init(), ("vocab", "embed")),
                                (cfg.vocab_size, cfg.hidden_size), pdtype)
        layer_cls = DecoderLayer
        if cfg.remat != "none":
            layer_cls = nn.remat(layer_cls, policy=REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan_layers)
        self.layers = nn.scan(
            layer_cls,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
            length=cfg.num_layers,
            unroll=1 if cfg.scan_layers else cfg.num_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )(cfg, name="layers")
        self.final_norm = RMSNorm(cfg.rms_norm_eps, pdtype)
        if not cfg.tie_embeddings:
            self.lm_head = self.param("lm_head", nn.with_logical_partitioning(_dense_init(), ("embed", "vocab")),
                                      (cfg.hidden_size, cfg.vocab_size), pdtype)

    def __call__(self, tokens_BxT, positions_BxT, mask_BxTxS):
        (x_BxTxE, _), _ = self.layers((self.embed_tokens(tokens_BxT), None), positions_BxT, mask_BxTxS, 0)
        return self.final_norm(x_BxTxE)

    def embed_tokens(self, tokens_BxT):
        # Gather the table's embed axis first: a lookup into an fsdp-sharded embed axis makes XLA
        # replicate the whole result before resharding it onto the batch.
        table = nn.with_logical_constraint(self.embed, ("vocab", None))
        x_BxTxE = jnp.take(table, tokens_BxT, axis=0).astype(jnp.dtype(self.config.dtype))
        return nn.with_logical_constraint(x_BxTxE, ("activation_batch", "activation_length", "activation_embed"))

    def normalize_final(self, x_BxTxE):
        return self.final_norm(x_BxTxE)

    def logits(self, hidden_BxTxE):
        dtype = jnp.dtype(self.config.dtype)
        if self.config.tie_embeddings:
            logits = jnp.einsum("bte,ve->btv", hidden_BxTxE, self.embed.astype(dtype))
        else:
            logits = hidden_BxTxE @ self.lm_head.astype(dtype)
        return nn.with_logical_constraint(logits, ("activation_batch", "activation_length", "activation_vocab"))


# ---------------------------------------------------------------------------------------------
# Pure functions


class KVCache(NamedTuple):
    """Static-shape cache for S slots. Slot metadata makes masking independent of how rows are padded.

    One array per layer, not a stacked one: a layer's slice of a stacked array is copied before each
    matmul that reads it. Keys keep slots minor and values head_dim minor: the layouts
    `cached_attention`'s matmuls read directly.
    """

    layer_k_BxKxHxS: tuple[jax.Array, ...]
    layer_v_BxKxSxH: tuple[jax.Array, ...]
    positions_BxS: jax.Array  # RoPE position of the token in each slot
    segment_ids_BxS: jax.Array  # 0 marks an empty slot or padding


def init_cache(config: ModelConfig, batch_size: int, num_slots: int, dtype: str | None = None) -> KVCache:
    B, K, H, S = batch_size, config.num_kv_heads, config.head_dim, num_slots
    cache_dtype = jnp.dtype(dtype or config.dtype)
    return KVCache(tuple(jnp.zeros((B, K, H, S), cache_dtype) for _ in range(config.num_layers)),
                   tuple(jnp.zeros((B, K, S, H), cache_dtype) for _ in range(config.num_layers)),
                   jnp.zeros((batch_size, num_slots), jnp.int32), jnp.zeros((batch_size, num_slots), jnp.int32))


def extend_cache(cache: KVCache, num_slots: int) -> KVCache:
    """The same cache with empty slots appended, up to `num_slots` in all."""

    def append_slots(x: jax.Array, slots_axis: int) -> jax.Array:
        widths = [(0, 0)] * x.ndim
        widths[slots_axis] = (0, num_slots - x.shape[slots_axis])
        return jnp.pad(x, widths)  # zeros: segment id 0 marks the new slots empty

    return KVCache(tuple(append_slots(k, 3) for k in cache.layer_k_BxKxHxS),
                   tuple(append_slots(v, 2) for v in cache.layer_v_BxKxSxH),
                   append_slots(cache.positions_BxS, 1), append_slots(cache.segment_ids_BxS, 1))


def attention_mask(q_positions_BxT, q_segment_ids_BxT, kv_positions_BxS, kv_segment_ids_BxS) -> jax.Array:
    """Causal by position, within a segment, never onto padding (segment 0)."""
    same_segment = q_segment_ids_BxT[:, :, None] == kv_segment_ids_BxS[:, None, :]
    causal = kv_positions_BxS[:, None, :] <= q_positions_BxT[:, :, None]
    return same_segment & causal & (kv_segment_ids_BxS[:, None, :] != 0)


def unstack_layers(params: Params) -> Params:
    """`params` with the stacked `layers` split into a tuple of per-layer dicts, the form `apply` with a
    cache reads in place. Sampling does this once per call (a copy of the layer weights): the decode
    loop would otherwise copy each layer's weights out of the stacked arrays at every step."""
    stacked = params["layers"]
    num_layers = jax.tree.leaves(stacked)[0].shape[0]
    return {**params, "layers": tuple(jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(num_layers))}


def _without_layers(params: Params) -> Params:
    return {name: value for name, value in params.items() if name != "layers"}


def apply(config: ModelConfig, params: Params, tokens_BxT: jax.Array, positions_BxT: jax.Array | None = None,
          segment_ids_BxT: jax.Array | None = None, cache: KVCache | None = None, write_index: jax.Array | int = 0,
          ) -> tuple[jax.Array, KVCache | None]:
    """Final hidden states `hidden_BxTxE` and the updated cache.

    Without a cache the tokens attend to each other, through the layer scan. With one, they are written
    into slots `[write_index, write_index + T)` of every row and attend to all filled slots; the layers
    run one by one, on `params` as stored or (faster when called in a loop) from `unstack_layers`.
    """
    B, T = tokens_BxT.shape
    if positions_BxT is None:
        positions_BxT = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    if segment_ids_BxT is None:
        segment_ids_BxT = jnp.ones((B, T), jnp.int32)
    model = Transformer(config)
    if cache is None:
        mask = attention_mask(positions_BxT, segment_ids_BxT, positions_BxT, segment_ids_BxT)
        return model.apply({"params": params}, tokens_BxT, positions_BxT, mask), None
    kv_positions = jax.lax.dynamic_update_slice_in_dim(cache.positions_BxS, positions_BxT, write_index, 1)
    kv_segment_ids = jax.lax.dynamic_update_slice_in_dim(cache.segment_ids_BxS, segment_ids_BxT, write_index, 1)
    mask = attention_mask(positions_BxT, segment_ids_BxT, kv_positions, kv_segment_ids)
    layers = params["layers"]
    if not isinstance(layers, tuple):
        layers = unstack_layers(params)["layers"]
    shared = {"params": _without_layers(params)}
    x_BxTxE = model.apply(shared, tokens_BxT, method=Transformer.embed_tokens)
    layer_k, layer_v = [], []
    for layer_params, k_BxKxHxS, v_BxKxSxH in zip(layers, cache.layer_k_BxKxHxS, cache.layer_v_BxKxSxH, strict=True):
        (x_BxTxE, (k_BxKxHxS, v_BxKxSxH)), _ = DecoderLayer(config).apply(
            {"params": layer_params}, (x_BxTxE, (k_BxKxHxS, v_BxKxSxH)), positions_BxT, mask, write_index)
        layer_k.append(k_BxKxHxS)
        layer_v.append(v_BxKxSxH)
    hidden_BxTxE = model.apply(shared, x_BxTxE, method=Transformer.normalize_final)
    return hidden_BxTxE, KVCache(tuple(layer_k), tuple(layer_v), kv_positions, kv_segment_ids)


def logits_from_hidden(config: ModelConfig, params: Params, hidden_BxTxE: jax.Array) -> jax.Array:
    return Transformer(config).apply({"params": _without_layers(params)}, hidden_BxTxE, method=Transformer.logits)


def forward(config: ModelConfig, params: Params, tokens_BxL: jax.Array, positions_BxL: jax.Array | None = None,
            segment_ids_BxL: jax.Array | None = None) -> jax.Array:
    """Full causal pass: `logits_BxLxV` in the compute dtype."""
    hidden, _ = apply(config, params, tokens_BxL, positions_BxL, segment_ids_BxL)
    return logits_from_hidden(config, params, hidden)


def _init_boxed(config: ModelConfig, key: jax.Array) -> Params:
    tokens = jnp.zeros((1, 1), jnp.int32)
    positions = jnp.zeros((1, 1), jnp.int32)
    mask = jnp.ones((1, 1, 1), bool)
    return Transformer(config).init(key, tokens, positions, mask)["params"]


def _init_unboxed(config: ModelConfig, key: jax.Array) -> Params:
    return nn.unbox(_init_boxed(config, key))


def init_params(config: ModelConfig, key: jax.Array, shardings: Params | None = None) -> Params:
    """Random parameters (HF's normal(0.02) init, unit norms), created directly on `shardings` if given."""
    # `config` static rather than bound in a partial: the compiled init is then reused by later calls.
    # How the layers run does not change the parameters, and the layer scan compiles fastest.
    scanned = dataclasses.replace(config, scan_layers=True, remat="none")
    return jax.jit(_init_unboxed, static_argnums=0, out_shardings=shardings)(scanned, key)


@functools.lru_cache(maxsize=None)
def param_logical_axes(config: ModelConfig) -> Params:
    """The parameter tree with a tuple of logical axis names at each leaf."""
    boxed = jax.eval_shape(functools.partial(_init_boxed, config), jax.random.key(0))
    return jax.tree.map(lambda box: tuple(box.names), boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def param_shapes(config: ModelConfig) -> Params:
    """The parameter tree of `jax.ShapeDtypeStruct`s, without allocating anything."""
    return jax.eval_shape(functools.partial(_init_unboxed, config), jax.random.key(0))


def forward_flops_per_token(config: ModelConfig, seq_len: int) -> float:
    """Matmul FLOPs of one token's forward pass at context `seq_len` (PaLM's count: attention
    scores and values over the full context, no causal halving). A training step is 3x this."""
    shapes = param_shapes(config)
    matmul_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["layers"]) if x.ndim >= 3)
    head_params = config.vocab_size * config.hidden_size
    attention = 2 * 2 * config.num_layers * config.num_heads * config.head_dim * seq_len
    return 2.0 * (matmul_params + head_params) + attention
