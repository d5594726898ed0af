"""Meshes and logical-axis sharding.

The model names logical axes (`embed`, `mlp`, `heads`, `activation_batch`, ...); a rule table maps
each to mesh axes (`data`, `fsdp`, `tensor`). Configs choose the mesh shape and the rule table; no
model code names a mesh axis.

Rule tables are JSON files in `r1jax/rules/` (presets, named by file stem), other JSON files of the
same layout, or explicit lists. Each preset's `description` says when to use it.

A mesh spans one slice (one TPU slice, or one GPU host), or several joined by the slower data-centre
network (DCN): then each mesh axis is `dcn_<axis> * <axis>` long, the DCN part outermost, so that
each slice (or GPU host) holds one contiguous block of it.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import linen as nn
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
DCN_AXES = tuple(f"dcn_{axis}" for axis in MESH_AXES)  # config keys: how many slices each mesh axis spans

Rules = tuple[tuple[str, Any], ...]


def _as_rules(pairs: Sequence[Sequence[Any]], source: str) -> Rules:
    """(logical axis, None | mesh axis | mesh axes) pairs, checked against MESH_AXES."""
    rules = []
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str):
            raise ValueError(f"{source}: {pair!r} is not a (logical axis, mesh axes) pair")
        logical, mesh_axes = pair
        names = (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes or ())
        unknown = [name for name in names if name not in MESH_AXES]
        if unknown:
            raise ValueError(f"{source}: {logical!r} maps to {unknown}, not mesh axes of {MESH_AXES}")
        rules.append((logical, tuple(mesh_axes) if isinstance(mesh_axes, (list, tuple)) else mesh_axes))
    return tuple(rules)


def load_rules_file(path: str | os.PathLike) -> Rules:
    """A JSON rule file: `{"description": ..., "rules": [[logical axis, null | mesh axis | [mesh axes]], ...]}`."""
    with open(path, encoding="utf-8") as f:
        content = json.load(f)
    if not isinstance(content, dict) or not isinstance(content.get("rules"), list):
        raise ValueError(f"{path}: expected a JSON object whose 'rules' is a list of [logical axis, mesh axes]")
    return _as_rules(content["rules"], str(path))


def _rule_presets() -> dict[str, Rules]:
    folder = importlib.resources.files("r1jax") / "rules"
    return {entry.name.removesuffix(".json"): load_rules_file(entry)
            for entry in sorted(folder.iterdir(), key=lambda e: e.name) if entry.name.endswith(".json")}


RULE_PRESETS: dict[str, Rules] = _rule_presets()
# The default for training (config.mesh.rules): FSDP over `fsdp`, tensor parallelism over `tensor`.
FSDP_TENSOR_RULES: Rules = RULE_PRESETS["fsdp_tensor"]


def get_rules(rules: str | Sequence[Sequence[Any]]) -> Rules:
    """A preset name (a file stem in r1jax/rules/), a JSON rule file's path, or (logical, mesh axes) pairs."""
    if isinstance(rules, str):
        if rules in RULE_PRESETS:
            return RULE_PRESETS[rules]
        if os.path.isfile(rules):
            return load_rules_file(rules)
        raise ValueError(f"unknown sharding rules {rules!r}: give a preset ({', '.join(sorted(RULE_PRESETS))}), "
                         "a path to a JSON rule file, or a list of (logical axis, mesh axes) pairs")
    return _as_rules(rules, "rules")


def dcn_mesh_shape(axis_sizes: Mapping[str, int]) -> tuple[int, ...]:
    """How many slices (or GPU hosts) each of `MESH_AXES` spans: the `dcn_<axis>` sizes, 1 when absent."""
    sizes = tuple(int(axis_sizes.get(name, 1)) for name in DCN_AXES)
    if any(s < 1 for s in sizes):
        raise ValueError(f"DCN mesh axes must be positive, got {dict(zip(DCN_AXES, sizes))}")
    return sizes


def ici_mesh_shape(axis_sizes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """Sizes of `MESH_AXES` inside one slice; one may be -1 to take the devices the others leave."""
    sizes = [int(axis_sizes.get(name, 1)) for name in MESH_AXES]
    shown = dict(zip(MESH_AXES, sizes))
    dcn = dcn_mesh_shape(axis_sizes)
    slices = math.prod(dcn)
    across = f" x {slices} slices ({dict(zip(DCN_AXES, dcn))})" if slices > 1 else ""
    fill = [i for i, s in enumerate(sizes) if s == -1]
    if len(fill) > 1:
        raise ValueError(f"only one mesh axis may be -1, got {shown}")
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh axis sizes must be positive or -1, got {shown}")
    known = math.prod(s for s in sizes if s != -1) * slices
    if fill:
        if num_devices % known:
            raise ValueError(f"mesh axes {shown}{across} cannot fill {num_devices} devices")
        sizes[fill[0]] = num_devices // known
    if math.prod(sizes) * slices != num_devices:
        raise ValueError(f"mesh axes {shown}{across} multiply to {math.prod(sizes) * slices}, "
                         f"but there are {num_devices} devices")
    return tuple(sizes)


def resolve_mesh_shape(axis_sizes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """The whole mesh's sizes of `MESH_AXES`: in-slice sizes times DCN sizes (see `ici_mesh_shape`)."""
    return tuple(i * d for i, d in zip(ici_mesh_shape(axis_sizes, num_devices), dcn_mesh_shape(axis_sizes)))


def device_grid(axis_sizes: Mapping[str, int], devices: Sequence[Any]) -> np.ndarray:
    """`devices` arranged as the mesh (`MESH_AXES` order), following the physical topology where known.

    Across slices (any `dcn_<axis>` > 1) the granules are TPU slices (`slice_index`), or processes on
    other platforms (one per GPU host). Physical axes may be split, e.g. a 16x16 v5e slice into 128x2:
    `jax.make_mesh` allows that on v5e only, and could not lay out the v5p-128 or v6e-64 presets.
    """
    ici, dcn = ici_mesh_shape(axis_sizes, len(devices)), dcn_mesh_shape(axis_sizes)
    if math.prod(dcn) == 1:
        slices = {getattr(d, "slice_index", 0) for d in devices} if devices[0].platform == "tpu" else {0}
        if len(slices) > 1:
            raise ValueError(f"the devices are {len(slices)} TPU slices: set mesh.dcn_data (or dcn_fsdp) to "
                             f"{len(slices)}, so that each slice is one block of that mesh axis")
        return mesh_utils.create_device_mesh(ici, devices, allow_split_physical_axes=True)
    return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, process_is_granule=devices[0].platform != "tpu",
                                                allow_split_physical_axes=True)


def make_mesh(axis_sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The mesh of `axis_sizes` (`MESH_AXES` and optionally `DCN_AXES` keys; others are ignored)."""
    devices = list(devices if devices is not None else jax.devices())
    return Mesh(device_grid(axis_sizes, devices), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


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
