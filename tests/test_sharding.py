"""Sharded execution on 8 fake CPU devices equals the single-device result; meshes of the machine presets
(multi-slice ones included) laid out on stand-in devices; rule presets."""

import dataclasses
import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from r1jax import model as model_lib
from r1jax import sharding
from r1jax.config import HARDWARE

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


# Every layout on one model; the other family (qk-norm on sharded heads) on the layout that splits most.
@pytest.mark.parametrize("name,layout", [*(("tiny", layout) for layout in LAYOUTS),
                                         ("tiny-qwen3", {"data": 2, "fsdp": 2, "tensor": 2})], ids=str)
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
    # The DCN sizes multiply the in-slice ones; -1 fills what one slice leaves.
    (dict(fsdp=-1, tensor=2, dcn_data=2), 16, (2, 4, 2)), (dict(fsdp=4, tensor=2, dcn_fsdp=2), 16, (1, 8, 2)),
])
def test_mesh_shape_fills_the_minus_one_axis(sizes, devices, expected):
    assert sharding.resolve_mesh_shape(sizes, devices) == expected


@pytest.mark.parametrize("sizes,message", [
    (dict(data=3), "multiply to 3"), (dict(data=-1, fsdp=-1), "only one"), (dict(data=-1, tensor=3), "cannot fill"),
    (dict(data=0), "positive"),
    (dict(data=4, dcn_data=4), "x 4 slices .* multiply to 16"), (dict(data=-1, dcn_data=3), "cannot fill"),
    (dict(dcn_tensor=0), "DCN mesh axes must be positive"),
])
def test_bad_mesh_shapes_are_explained(sizes, message):
    with pytest.raises(ValueError, match=message):
        sharding.resolve_mesh_shape(sizes, 8)


def test_rule_presets_and_explicit_rules(tmp_path):
    assert sorted(sharding.RULE_PRESETS) == ["fsdp", "fsdp_tensor", "tensor_decode"]
    assert sharding.get_rules("fsdp_tensor") is sharding.FSDP_TENSOR_RULES
    assert dict(sharding.get_rules("tensor_decode"))["embed"] is None
    assert sharding.get_rules([["embed", ["data", "fsdp"]], ["mlp", None]]) == (("embed", ("data", "fsdp")), ("mlp", None))
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"rules": [["embed", "fsdp"], ["activation_batch", ["data", "fsdp"]]]}))
    assert sharding.get_rules(str(path)) == (("embed", "fsdp"), ("activation_batch", ("data", "fsdp")))
    with pytest.raises(ValueError, match=r"unknown sharding rules 'nope': give a preset \(fsdp, fsdp_tensor, t"):
        sharding.get_rules("nope")
    path.write_text(json.dumps({"rules": [["embed", "fdsp"]]}))
    with pytest.raises(ValueError, match="'embed' maps to \\['fdsp'\\], not mesh axes"):
        sharding.get_rules(str(path))
    path.write_text(json.dumps([["embed", "fsdp"]]))
    with pytest.raises(ValueError, match="expected a JSON object whose 'rules'"):
        sharding.get_rules(str(path))


def test_every_rule_preset_maps_every_logical_axis():
    axes_tree = model_lib.param_logical_axes(model_lib.get_model_config("tiny"))
    param_axes = {name for axes in jax.tree.leaves(axes_tree, is_leaf=lambda x: isinstance(x, tuple)) for name in axes}
    assert param_axes <= set(dict(sharding.FSDP_TENSOR_RULES))
    for preset, rules in sharding.RULE_PRESETS.items():
        assert [logical for logical, _ in rules] == [logical for logical, _ in sharding.FSDP_TENSOR_RULES], preset


def test_pure_fsdp_rules_use_the_tensor_axis_as_more_fsdp_shards():
    mesh = sharding.make_mesh(dict(fsdp=4, tensor=2))
    rules = sharding.get_rules("fsdp")
    assert sharding.logical_to_spec(("embed", "mlp"), (64, 128), mesh, rules) == P(("fsdp", "tensor"), None)
    assert sharding.data_parallel_size(mesh.shape, rules) == 8


@dataclasses.dataclass(frozen=True)
class StandInDevice:
    """What jax.experimental.mesh_utils reads of a device, to lay out meshes of machines that are not here."""

    id: int
    platform: str
    device_kind: str
    process_index: int = 0
    slice_index: int = 0
    coords: tuple[int, int, int] = (0, 0, 0)
    core_on_chip: int = 0


TPU_DEVICE_KINDS = {"v4": "TPU v4", "v5e": "TPU v5 lite", "v5": "TPU v5", "v6e": "TPU v6 lite"}


def _tpu_slices(topology, num_slices):
    """The devices of `num_slices` TPU slices of `topology` (e.g. 'v5e:16x16'), x fastest as JAX lists them."""
    generation, _, dims = topology.partition(":")
    chips = [int(d) for d in dims.split("x")]
    chips += [1] * (3 - len(chips))  # v5e and v6e slices are flat
    devices = []
    for slice_index in range(num_slices):
        for z, y, x in itertools.product(*(range(n) for n in reversed(chips))):
            devices.append(StandInDevice(len(devices), "tpu", TPU_DEVICE_KINDS[generation], slice_index=slice_index,
                                         coords=(x, y, z)))
    return devices


def _granule_of_each_dcn_block(grid, axis_sizes, granule):
    """For each block of the mesh that one DCN index selects, the set of granules (slices, hosts) in it."""
    ici = sharding.ici_mesh_shape(axis_sizes, grid.size)
    dcn = sharding.dcn_mesh_shape(axis_sizes)
    blocks = grid.reshape([n for pair in zip(dcn, ici) for n in pair]).transpose(0, 2, 4, 1, 3, 5)
    return [{granule(d) for d in block.flat} for block in blocks.reshape(math.prod(dcn), -1)]


@pytest.mark.parametrize("name", [name for name, hardware in HARDWARE.items() if hardware.topology])
def test_tpu_presets_lay_out_on_their_slices(name):
    hardware = HARDWARE[name]
    axis_sizes = {**hardware.mesh, **hardware.dcn}
    num_slices = math.prod(hardware.dcn.values())
    devices = _tpu_slices(hardware.topology, num_slices)
    assert len(devices) == hardware.devices == math.prod(hardware.mesh.values()) * num_slices
    grid = sharding.device_grid(axis_sizes, devices)
    assert grid.shape == sharding.resolve_mesh_shape(axis_sizes, len(devices))
    assert sorted(d.id for d in grid.flat) == list(range(len(devices)))
    # Tensor parallelism talks every layer: its pairs are neighbouring chips, one ICI hop apart.
    for first, second in grid.reshape(-1, grid.shape[-1]):
        assert sum(abs(a - b) for a, b in zip(first.coords, second.coords)) == 1
    # Each slice is one contiguous block of the DCN axis, in slice order.
    assert _granule_of_each_dcn_block(grid, axis_sizes, lambda d: d.slice_index) == [{i} for i in range(num_slices)]


def test_gpu_hosts_are_the_granules_of_a_multi_host_mesh():
    hardware = HARDWARE["gpu8x2"]
    axis_sizes = {**hardware.mesh, **hardware.dcn}
    devices = [StandInDevice(i, "gpu", "NVIDIA H100 80GB HBM3", process_index=i // 8) for i in range(16)]
    grid = sharding.device_grid(axis_sizes, devices[::-1])  # the order they are listed in does not matter
    assert grid.shape == (2, 4, 2)
    assert _granule_of_each_dcn_block(grid, axis_sizes, lambda d: d.process_index) == [{0}, {1}]
    assert [d.id for d in grid[0].flat] == list(range(8))


def test_a_dcn_axis_needs_as_many_slices_as_it_spans():
    with pytest.raises(ValueError, match="Number of slices 1 must equal the product of dcn_mesh_shape"):
        sharding.make_mesh(dict(fsdp=4, dcn_data=2))  # the 8 CPU devices are one process
    with pytest.raises(ValueError, match="the devices are 2 TPU slices: set mesh.dcn_data"):
        sharding.device_grid(dict(fsdp=-1, tensor=2), _tpu_slices("v5e:2x4", 2))
