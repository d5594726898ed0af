"""Meshes and logical-axis sharding.

The model names logical axes (`embed`, `mlp`, `heads`, `activation_batch`, ...); a rule table maps
each to mesh axes (`data`, `fsdp`, `tensor`). Configs choose the mesh shape and the rule table; no
model code names a mesh axis.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from flax import linen as nn
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

Rules = tuple[tuple[str, Any], ...]

# FSDP over `fsdp`, Megatron-style tensor parallelism over `tensor`, batch over `data` and `fsdp`.
# With tensor=1 it is pure FSDP, with fsdp=tensor=1 pure data parallelism.
FSDP_TENSOR_RULES: Rules = (
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv_heads", "tensor"),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("layers", None),
    ("norm", None),
)

RULE_PRESETS: dict[str, Rules] = {"fsdp_tensor": FSDP_TENSOR_RULES}


def resolve_mesh_shape(axis_sizes: dict[str, int], num_devices: int) -> tuple[int, ...]:
    """Sizes for `MESH_AXES`; one axis may be -1 to take the devices the others leave."""
    sizes = [int(axis_sizes.get(name, 1)) for name in MESH_AXES]
    fill = [i for i, s in enumerate(sizes) if s == -1]
    if len(fill) > 1:
        raise ValueError(f"only one mesh axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh axis sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}")
    known = math.prod(s for s in sizes if s != -1)
    if fill:
        if num_devices % known:
            raise ValueError(f"mesh axes {dict(zip(MESH_AXES, sizes))} cannot fill {num_devices} devices")
        sizes[fill[0]] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise ValueError(f"mesh axes {dict(zip(MESH_AXES, sizes))} multiply to {math.prod(sizes)}, "
                         f"but there are {num_devices} devices")
    return tuple(sizes)


def make_mesh(axis_sizes: dict[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    shape = resolve_mesh_shape(axis_sizes, len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def get_rules(rules: str | Sequence[Sequence[Any]]) -> Rules:
    """A preset name or an explicit list of (logical, mesh axes) pairs."""
    if isinstance(rules, str):
        if rules not in RULE_PRESETS:
            raise ValueError(f"unknown sharding rules {rules!r}; presets: {sorted(RULE_PRESETS)}")
        return RULE_PRESETS[rules]
    return tuple((str(logical), tuple(m) if isinstance(m, (list, tuple)) else m) for logical, m in rules)


def logical_to_spec(logical_axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Rules
                    ) -> PartitionSpec:
    """PartitionSpec for one array. Mesh axes that don't divide a dimension, or are already used by an
    earlier dimension, are dropped, so small models (e.g. one KV head) still place on big meshes."""
    table = dict(rules)
    used: set[str] = set()
    spec = []
    for name, dim in zip(logical_axes, shape):
        mapped = table.get(name) if name is not None else None
        mesh_axes = (mapped,) if isinstance(mapped, str) else tuple(mapped or ())
        kept, size = [], 1
        for axis in mesh_axes:
            axis_size = mesh.shape[axis]
            if axis in used or axis_size == 1 or dim % (size * axis_size):
                continue
            kept.append(axis)
            size *= axis_size
        used.update(kept)
        spec.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return PartitionSpec(*spec)


def param_shardings(logical_axes_tree: Any, shapes_tree: Any, mesh: Mesh, rules: Rules) -> Any:
    """NamedShardings for a parameter tree, from its logical axes and shapes."""
    return jax.tree.map(
        lambda axes, shape: NamedSharding(mesh, logical_to_spec(axes, shape.shape, mesh, rules)),
        logical_axes_tree, shapes_tree, is_leaf=lambda x: isinstance(x, tuple))


def batch_sharding(mesh: Mesh, rules: Rules, ndim: int) -> NamedSharding:
    """Leading axis over the `activation_batch` mesh axes, the rest replicated."""
    batch_axes = dict(rules).get("activation_batch")
    return NamedSharding(mesh, PartitionSpec(batch_axes, *([None] * (ndim - 1))))


def data_parallel_size(axis_sizes: Mapping[str, int], rules: Rules) -> int:
    """How many ways the batch axis is split (`axis_sizes`: e.g. `mesh.shape`); batches must be multiples."""
    batch_axes = dict(rules).get("activation_batch")
    names = (batch_axes,) if isinstance(batch_axes, str) else tuple(batch_axes or ())
    return math.prod(axis_sizes[n] for n in names)


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules: Rules):
    """Makes the mesh and rules current, so the model's logical constraints take effect when traced."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield
