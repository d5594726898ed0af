"""Optimizer: schedules at their landmarks and AdamW steps against a NumPy implementation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import optim


def test_cosine_schedule_landmarks():
    config = optim.optimizer_config(learning_rate=1e-3, schedule="cosine", warmup_steps=10, end_factor=0.1)
    schedule = optim.learning_rate_schedule(config, total_steps=110)
    np.testing.assert_allclose([schedule(0), schedule(5), schedule(10), schedule(60), schedule(110)],
                               [0.0, 5e-4, 1e-3, 1e-3 * (0.1 + 0.9 * 0.5), 1e-4], rtol=1e-5)


def test_constant_schedule_with_and_without_warmup():
    warm = optim.learning_rate_schedule(optim.optimizer_config(learning_rate=2e-4, warmup_steps=4), 100)
    np.testing.assert_allclose([warm(0), warm(2), warm(4), warm(99)], [0.0, 1e-4, 2e-4, 2e-4], rtol=1e-6)
    flat = optim.learning_rate_schedule(optim.optimizer_config(learning_rate=2e-4), 100)
    assert float(flat(0)) == pytest.approx(2e-4)
    with pytest.raises(ValueError, match="schedule"):
        optim.learning_rate_schedule(optim.optimizer_config(schedule="linear"), 10)


def test_norms_and_biases_are_not_decayed():
    params = {"embed": 0, "layers": {"attn": {"q_proj": 0, "q_bias": 0, "q_norm": {"scale": 0}},
                                     "input_norm": {"scale": 0}}, "final_norm": {"scale": 0}}
    mask = optim.decay_mask(params)
    assert mask["embed"] and mask["layers"]["attn"]["q_proj"]
    assert not any([mask["layers"]["attn"]["q_bias"], mask["layers"]["attn"]["q_norm"]["scale"],
                    mask["layers"]["input_norm"]["scale"], mask["final_norm"]["scale"]])


def _numpy_adamw(params, grads_per_step, lr, b1, b2, eps, wd, max_norm, decayed):
    """Textbook AdamW with bias correction, decoupled decay and global-norm clipping, in float64."""
    params = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in params.items()}
    for t, grads in enumerate(grads_per_step, start=1):
        norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values()))
        scale = min(1.0, max_norm / norm)
        for k in params:
            g = grads[k].astype(np.float64) * scale
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            update = (m[k] / (1 - b1 ** t)) / (np.sqrt(v[k] / (1 - b2 ** t)) + eps)
            if decayed[k]:
                update = update + wd * params[k]
            params[k] = params[k] - lr * update
    return params


def test_adamw_with_clipping_matches_numpy():
    rng = np.random.RandomState(0)
    params = {"w_proj": rng.randn(4, 3).astype(np.float32), "b_bias": rng.randn(3).astype(np.float32)}
    grads = [{k: (rng.randn(*p.shape) * 3).astype(np.float32) for k, p in params.items()} for _ in range(3)]
    config = optim.optimizer_config(learning_rate=1e-2, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, max_grad_norm=1.0)
    optimizer, _ = optim.make_optimizer(config, total_steps=3)
    state = optimizer.init(params)
    current = jax.tree.map(jnp.asarray, params)
    for g in grads:
        updates, state = optimizer.update(jax.tree.map(jnp.asarray, g), state, current)
        current = jax.tree.map(lambda p, u: p + u, current, updates)
    expected = _numpy_adamw(params, grads, 1e-2, 0.9, 0.95, 1e-8, 0.1, 1.0, {"w_proj": True, "b_bias": False})
    for k in params:
        np.testing.assert_allclose(np.asarray(current[k]), expected[k], rtol=2e-5, atol=2e-6)
