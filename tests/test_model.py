"""Model: parameter counts, the cached pass against the full pass, padding and packing, numerics options."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import model as model_lib
from r1jax.model import KVCache

TINY = ("tiny", "tiny-llama", "tiny-qwen3")


def _count_params_by_hand(c: model_lib.ModelConfig) -> int:
    """Independent count from the architecture description, not from the module code."""
    attention = c.hidden_size * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads)
    if c.qkv_bias:
        attention += c.head_dim * (c.num_heads + 2 * c.num_kv_heads)
    if c.qk_norm:
        attention += 2 * c.head_dim
    layer = attention + 3 * c.hidden_size * c.intermediate_size + 2 * c.hidden_size
    embeddings = c.vocab_size * c.hidden_size * (1 if c.tie_embeddings else 2)
    return c.num_layers * layer + embeddings + c.hidden_size


@pytest.mark.parametrize("name", sorted(model_lib.MODEL_CONFIGS))
def test_param_count_matches_architecture(name):
    config = model_lib.MODEL_CONFIGS[name]
    assert config.num_params() == _count_params_by_hand(config)


@pytest.mark.parametrize("name,published", [("llama3.1-8b", 8_030_261_248), ("llama3.2-1b", 1_235_814_400)])
def test_param_count_matches_published_figure(name, published):
    assert model_lib.MODEL_CONFIGS[name].num_params() == published


forward = jax.jit(model_lib.forward, static_argnums=0)


def _params(name, seed=0, **overrides):
    config = model_lib.get_model_config(name, **overrides)
    return config, model_lib.init_params(config, jax.random.key(seed))


@pytest.mark.parametrize("unstack", [False, True], ids=["stacked", "unstacked"])
@pytest.mark.parametrize("name", TINY)
def test_prefill_then_cached_decode_equals_full_forward(name, unstack):
    config, params = _params(name)
    B, P, T, S = 3, 5, 11, 16  # prompt length, total length, cache slots
    tokens = jax.random.randint(jax.random.key(1), (B, T), 0, config.vocab_size)
    full = forward(config, params, tokens)
    if unstack:  # the form the sampler passes: the same weights, one dict per layer
        params = model_lib.unstack_layers(params)
        assert len(params["layers"]) == config.num_layers
    cache = model_lib.init_cache(config, B, S)
    positions = jnp.broadcast_to(jnp.arange(T), (B, T))
    hidden, cache = model_lib.apply(config, params, tokens[:, :P], positions[:, :P], cache=cache, write_index=0)
    steps = [model_lib.logits_from_hidden(config, params, hidden)]
    decode = jax.jit(lambda p, tok, pos, c, i: model_lib.apply(config, p, tok, pos, cache=c, write_index=i))
    for t in range(P, T):
        hidden, cache = decode(params, tokens[:, t:t + 1], positions[:, t:t + 1], cache, t)
        steps.append(model_lib.logits_from_hidden(config, params, hidden))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5, rtol=1e-5)
    assert isinstance(cache, KVCache) and int(cache.segment_ids_BxS[:, T:].max()) == 0


def test_prefill_into_prompt_slots_then_extend_equals_prefill_into_whole_cache():
    config, params = _params("tiny-qwen3")
    B, P, S = 2, 6, 10
    tokens = jax.random.randint(jax.random.key(4), (B, P), 0, config.vocab_size)
    hidden_whole, whole = model_lib.apply(config, params, tokens, cache=model_lib.init_cache(config, B, S))
    hidden_exact, exact = model_lib.apply(config, params, tokens, cache=model_lib.init_cache(config, B, P))
    extended = model_lib.extend_cache(exact, S)
    np.testing.assert_allclose(hidden_exact, hidden_whole, atol=1e-6)
    for a, b in zip(jax.tree.leaves(extended), jax.tree.leaves(whole), strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_cached_attention_matches_float64_reference():
    B, T, N, K, H, S = 2, 3, 6, 2, 8, 7
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=shape) for shape in ((B, T, N, H), (B, S, K, H), (B, S, K, H)))
    mask = rng.random((B, T, S)) < 0.6
    mask[0, 0] = True
    mask[1, 2] = False  # no slot to attend to: jax.nn.dot_product_attention averages all values
    out = model_lib.cached_attention(jnp.asarray(q, jnp.float32), jnp.asarray(k.transpose(0, 2, 3, 1), jnp.float32),
                                     jnp.asarray(v.transpose(0, 2, 1, 3), jnp.float32), jnp.asarray(mask))
    group = N // K
    k_heads, v_heads = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)  # query head n reads kv head n // group
    scores = np.einsum("btnh,bsnh->bnts", q, k_heads) / np.sqrt(H)
    scores = np.where(mask[:, None], scores, -np.inf)
    scores = np.where(mask[:, None].any(-1, keepdims=True), scores, 0.0)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    expected = np.einsum("bnts,bsnh->btnh", weights / weights.sum(-1, keepdims=True), v_heads)
    np.testing.assert_allclose(out, expected, atol=2e-6)
    reference = jax.nn.dot_product_attention(jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32),
                                             jnp.asarray(v, jnp.float32), mask=jnp.asarray(mask)[:, None])
    np.testing.assert_allclose(out, reference, atol=2e-6)


@pytest.mark.parametrize("name", TINY)
def test_left_padded_rows_equal_unpadded_rows(name):
    config, params = _params(name)
    short = jax.random.randint(jax.random.key(2), (1, 6), 0, config.vocab_size)
    pad = 4
    padded = jnp.concatenate([jnp.zeros((1, pad), jnp.int32), short], axis=1)
    positions = jnp.concatenate([jnp.zeros((1, pad), jnp.int32), jnp.arange(6)[None]], axis=1)
    segment_ids = jnp.concatenate([jnp.zeros((1, pad), jnp.int32), jnp.ones((1, 6), jnp.int32)], axis=1)
    out = forward(config, params, padded, positions, segment_ids)
    assert np.isfinite(np.asarray(out)).all()
    np.testing.assert_allclose(out[:, pad:], forward(config, params, short), atol=1e-5, rtol=1e-5)


def test_packed_documents_do_not_attend_across_segments():
    config, params = _params("tiny")
    a = jax.random.randint(jax.random.key(3), (1, 7), 0, config.vocab_size)
    b = jax.random.randint(jax.random.key(4), (1, 5), 0, config.vocab_size)
    packed = jnp.concatenate([a, b], axis=1)
    positions = jnp.concatenate([jnp.arange(7), jnp.arange(5)])[None]
    segment_ids = jnp.array([[1] * 7 + [2] * 5])
    out = forward(config, params, packed, positions, segment_ids)
    np.testing.assert_allclose(out[:, :7], forward(config, params, a), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(out[:, 7:], forward(config, params, b), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", [dict(scan_layers=False), dict(remat="full")])
def test_unrolled_and_rematerialised_layers_give_the_same_values_and_gradients(overrides):
    config, params = _params("tiny-qwen3")
    variant = dataclasses.replace(config, **overrides)
    tokens = jax.random.randint(jax.random.key(5), (2, 9), 0, config.vocab_size)

    def loss(cfg):
        return lambda p: jnp.mean(jax.nn.log_softmax(model_lib.forward(cfg, p, tokens))[..., 0])

    base_value, base_grads = jax.jit(jax.value_and_grad(loss(config)))(params)
    value, grads = jax.jit(jax.value_and_grad(loss(variant)))(params)
    np.testing.assert_allclose(value, base_value, rtol=1e-6)
    jax.tree.map(lambda g, b: np.testing.assert_allclose(g, b, atol=1e-6, rtol=1e-4), grads, base_grads)


@pytest.mark.parametrize("overrides", [dict(scan_layers=False), dict(remat="full")])
def test_init_params_equal_what_the_unrolled_or_rematerialised_module_creates(overrides):
    config = dataclasses.replace(model_lib.get_model_config("tiny"), **overrides)
    created = jax.jit(model_lib._init_unboxed, static_argnums=0)(config, jax.random.key(4))
    jax.tree.map(np.testing.assert_array_equal, model_lib.init_params(config, jax.random.key(4)), created)


def test_bfloat16_compute_stays_close_to_float32():
    config, params = _params("tiny")
    tokens = jax.random.randint(jax.random.key(6), (2, 16), 0, config.vocab_size)
    f32 = forward(config, params, tokens)
    bf16 = forward(dataclasses.replace(config, dtype="bfloat16"), params, tokens)
    assert bf16.dtype == jnp.bfloat16
    scale = float(jnp.abs(f32).max())
    assert float(jnp.abs(bf16.astype(jnp.float32) - f32).max()) < 0.05 * scale


def test_llama3_rope_scaling_bands():
    """Short wavelengths keep their frequency, long ones are divided by `factor`, the band between is
    blended; computed here from the definition of the bands."""
    config = model_lib.MODEL_CONFIGS["llama3.1-8b"]
    scaled = model_lib.rope_inverse_frequencies(config)
    plain = model_lib.rope_inverse_frequencies(dataclasses.replace(config, rope_scaling=None))
    wavelength = 2 * np.pi / plain
    s = config.rope_scaling
    short = wavelength < s.original_max_position_embeddings / s.high_freq_factor
    long = wavelength > s.original_max_position_embeddings / s.low_freq_factor
    assert short.any() and long.any() and (~short & ~long).any()
    np.testing.assert_allclose(scaled[short], plain[short])
    np.testing.assert_allclose(scaled[long], plain[long] / s.factor)
    middle = ~short & ~long
    assert np.all((scaled[middle] < plain[middle]) & (scaled[middle] > plain[middle] / s.factor))


def test_invalid_architectures_are_rejected():
    with pytest.raises(ValueError, match="not a multiple of num_kv_heads"):
        model_lib.get_model_config("tiny", num_kv_heads=3)
    with pytest.raises(ValueError, match="family"):
        model_lib.get_model_config("tiny", family="gpt2")
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        model_lib.get_model_config("nope")
