"""Sharded execution on 8 fake CPU devices equals the single-device result."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from r1jax import model as model_lib
from r1jax import sharding

LAYOUTS = [dict(fsdp=4, tensor=2), dict(data=8), dict(data=2, fsdp=2, tensor=2), dict(fsdp=-1)]


def _sharded_params(config, mesh, seed=0):
    shardings = sharding.param_shardings(model_lib.param_logical_axes(config), model_lib.param_shapes(config), mesh,
                                         sharding.FSDP_TENSOR_RULES)
    return model_lib.init_params(config, jax.random.key(seed), shardings), shardings


def test_eight_fake_devices_are_visible():
    assert jax.device_count() == 8


def _loss_and_logits(config):
    def loss(params, tokens):
        logits = model_lib.forward(config, params, tokens)
        return jnp.mean(jax.nn.logsumexp(logits, -1)), logits
    return loss


def _run_sharded(fn, config, layout, tokens):
    mesh = sharding.make_mesh(layout)
    rules = sharding.FSDP_TENSOR_RULES
    params, _ = _sharded_params(config, mesh)
    with sharding.use_mesh(mesh, rules):
        return jax.jit(fn)(params, jax.device_put(tokens, sharding.batch_sharding(mesh, rules, 2)))


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
@pytest.mark.parametrize("name", ["tiny", "tiny-qwen3"])
def test_sharded_forward_equals_single_device(name, layout):
    config = model_lib.get_model_config(name)
    tokens = jax.random.randint(jax.random.key(1), (8, 12), 0, config.vocab_size)
    reference = jax.jit(model_lib.forward, static_argnums=0)(config, model_lib.init_params(config, jax.random.key(0)), tokens)
    logits = _run_sharded(lambda p, t: model_lib.forward(config, p, t), config, layout, tokens)
    np.testing.assert_allclose(logits, reference, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", [dict(data=2, fsdp=2, tensor=2), dict(fsdp=-1)], ids=str)
def test_sharded_gradients_equal_single_device(layout):
    config = model_lib.get_model_config("tiny")
    tokens = jax.random.randint(jax.random.key(1), (8, 12), 0, config.vocab_size)
    grad_fn = jax.value_and_grad(_loss_and_logits(config), has_aux=True)
    (ref_loss, _), ref_grads = jax.jit(grad_fn)(model_lib.init_params(config, jax.random.key(0)), tokens)
    (loss, _), grads = _run_sharded(grad_fn, config, layout, tokens)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    jax.tree.map(lambda g, r: np.testing.assert_allclose(g, r, atol=1e-6, rtol=1e-4), grads, ref_grads)


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_parameters_are_born_sharded_with_the_same_values(layout):
    config = model_lib.get_model_config("tiny")
    mesh = sharding.make_mesh(layout)
    params, shardings = _sharded_params(config, mesh, seed=7)
    reference = model_lib.init_params(config, jax.random.key(7))
    for got, want, ref in zip(jax.tree.leaves(params), jax.tree.leaves(shardings), jax.tree.leaves(reference)):
        assert got.sharding == want
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


def test_rules_map_logical_axes_and_drop_axes_that_do_not_divide():
    mesh = sharding.make_mesh(dict(fsdp=4, tensor=2))
    rules = sharding.FSDP_TENSOR_RULES
    assert sharding.logical_to_spec(("layers", "embed", "heads", "head_dim"), (2, 64, 4, 16), mesh, rules) == \
        P(None, "fsdp", "tensor", None)
    # One KV head cannot be split over tensor=2: that dimension stays replicated.
    assert sharding.logical_to_spec(("embed", "kv_heads", "head_dim"), (64, 1, 16), mesh, rules) == P("fsdp", None, None)
    # 6 is not a multiple of fsdp=4.
    assert sharding.logical_to_spec(("embed", "mlp"), (6, 8), mesh, rules) == P(None, "tensor")
    # A mesh axis is used at most once per array.
    assert sharding.logical_to_spec(("mlp", "heads"), (8, 8), mesh, rules) == P("tensor", None)
    batch_mesh = sharding.make_mesh(dict(data=2, fsdp=4))
    assert sharding.logical_to_spec(("activation_batch", None), (16, 3), batch_mesh, rules) == P(("data", "fsdp"), None)
    assert sharding.data_parallel_size(batch_mesh.shape, rules) == 8


@pytest.mark.parametrize("sizes,devices,expected", [
    (dict(data=-1), 8, (8, 1, 1)), (dict(fsdp=-1, tensor=2), 8, (1, 4, 2)), (dict(data=2, fsdp=2, tensor=2), 8, (2, 2, 2)),
])
def test_mesh_shape_fills_the_minus_one_axis(sizes, devices, expected):
    assert sharding.resolve_mesh_shape(sizes, devices) == expected


@pytest.mark.parametrize("sizes,message", [
    (dict(data=3), "multiply to 3"), (dict(data=-1, fsdp=-1), "only one"), (dict(data=-1, tensor=3), "cannot fill"),
    (dict(data=0), "positive"),
])
def test_bad_mesh_shapes_are_explained(sizes, message):
    with pytest.raises(ValueError, match=message):
        sharding.resolve_mesh_shape(sizes, 8)


def test_rule_presets_and_explicit_rules():
    assert sharding.get_rules("fsdp_tensor") is sharding.FSDP_TENSOR_RULES
    assert sharding.get_rules([["embed", ["data", "fsdp"]], ["mlp", None]]) == (("embed", ("data", "fsdp")), ("mlp", None))
    with pytest.raises(ValueError, match="unknown sharding rules"):
        sharding.get_rules("nope")
