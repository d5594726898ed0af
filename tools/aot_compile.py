"""Compiles a config's train step ahead of time for a machine and prints the memory each device needs.

    python tools/aot_compile.py --config configs/tinyzero_qwen25_3b.py --topology v5e-32
    python tools/aot_compile.py --config configs/r1zero_math_qwen25_7b.py:dapo --topology v5p-64 \\
        --config.grpo.microbatch_size=32
    python tools/aot_compile.py --config configs/sft_countdown_tiny.py        # this machine's devices

`--topology` names a machine of `r1jax.config.HARDWARE`; its mesh replaces the config's, and `--config.*`
flags apply after it. For a TPU machine, with libtpu installed (`pip install "jax[tpu]"`), XLA's TPU
compiler compiles for the real topology with no TPU attached (`jax.experimental.topologies`). Otherwise,
and for GPU machines, the step is compiled for as many fake CPU devices, on the same mesh with its slices
joined into one: arguments and outputs per device are exact, temporaries are the CPU compiler's, a rough
guide to an accelerator's. Without `--topology` it compiles for this machine's devices and the config's mesh.

The step is the run's (`r1jax.aot`): for `grpo` the policy update on one minibatch, for `sft` one optimizer
step. Nothing is read but the config: a `model.checkpoint` that is not a directory (the configs'
placeholder) stands for the architecture `model.name` names.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import ml_collections  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from r1jax import aot, runtime, sharding  # noqa: E402
from r1jax import config as config_lib  # noqa: E402
from r1jax import model as model_lib  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Report:
    target: str  # what it was compiled for
    mesh: dict[str, int]
    parameters: int
    param_bytes_per_device: int  # the parameters' shards on one device
    flops_per_device: float  # of one step, by the model's matmul count (3 x forward)
    memory: dict[str, int]  # bytes per device: arguments, outputs, aliased, temporaries, total


def parse_config(argv: Sequence[str]) -> tuple[ml_collections.ConfigDict, str | None]:
    """(config, machine name or None) from `--config path[:variant] [--topology NAME] [--config.a.b=v ...]`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--config", required=True, help="a config file, optionally with ':variant'")
    parser.add_argument("--topology", choices=sorted(config_lib.HARDWARE), help="the machine to compile for")
    args, overrides = parser.parse_known_args(argv)
    problem = config_lib.config_file_problem(args.config)
    if problem:
        raise SystemExit(f"aot_compile: {problem}")
    config = config_lib.load_config_file(args.config)
    if config.get("mode") not in aot.TRAIN_MODES:
        raise SystemExit(f"aot_compile: {args.config} is a {config.get('mode')!r} config; only the modes with a "
                         f"train step ({', '.join(aot.TRAIN_MODES)}) compile one")
    if args.topology:
        config_lib.use_hardware(config, args.topology)
    flag_values = flags.FlagValues()  # the --config.a.b=v overrides, parsed as r1jax.main parses them
    absl_argv = ["aot_compile", *overrides]
    try:
        config_flags.DEFINE_config_dict("config", config, flag_values=flag_values, sys_argv=absl_argv)
        flag_values(absl_argv)
    except (AttributeError, KeyError, TypeError, ValueError, flags.Error) as e:
        raise SystemExit(f"aot_compile: {config_lib.first_unknown_override(config, overrides) or e}") from None
    return flag_values.config, args.topology


def _tpu_topology_devices(hardware: config_lib.Hardware) -> list:
    """Compile-only devices of the machine's TPU slices; RuntimeError without libtpu."""
    from jax.experimental import topologies

    generation, _, dims = hardware.topology.partition(":")
    dims = [int(d) for d in dims.split("x")]
    # Full-size slices are tori: a 16-chip v5e/v6e side, v4/v5p cubes of 4x4x4 chips (Cloud TPU's layouts).
    wrap = [d == 16 for d in dims] if len(dims) == 2 else [all(d % 4 == 0 for d in dims)] * 3
    return topologies.get_topology_desc(
        hardware.topology, "tpu", chip_config_name="megacore" if generation in ("v4", "v5") else "default",
        chips_per_host_bounds=(2, 2, 1), num_slices=math.prod(hardware.dcn.values()),
        wrap=tuple(wrap + [False] * (3 - len(wrap)))).devices


def _fake_cpu_devices(count: int) -> list:
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX already started (a test, a notebook): use the CPU devices it has
        pass
    devices = jax.devices("cpu")
    if len(devices) < count:
        raise SystemExit(f"aot_compile: needs {count} CPU devices, JAX has {len(devices)}; run it in a new process")
    return devices[:count]


def target_mesh(config: ml_collections.ConfigDict, machine: str | None) -> tuple[jax.sharding.Mesh, str]:
    """The mesh to compile on, and what its devices are."""
    if machine is None:
        devices = jax.devices()
        return sharding.make_mesh(dict(config.mesh), devices), f"this machine ({devices[0].device_kind})"
    hardware = config_lib.HARDWARE[machine]
    if hardware.topology:
        try:
            devices = _tpu_topology_devices(hardware)
            return sharding.make_mesh(dict(config.mesh), devices), f"{machine} (TPU compiler, no TPU attached)"
        except RuntimeError as e:  # "JAX TPU support not installed"
            print(f"aot_compile: no TPU compiler ({str(e).split(';')[0]}); using fake CPU devices", file=sys.stderr)
    sizes = dict(zip(sharding.MESH_AXES, sharding.resolve_mesh_shape(config.mesh, hardware.devices)))
    return (sharding.make_mesh(sizes, _fake_cpu_devices(hardware.devices)),
            f"{machine} as {hardware.devices} fake CPU devices (temporaries are the CPU compiler's)")


def _model_config(config: ml_collections.ConfigDict) -> model_lib.ModelConfig:
    if config.model.checkpoint and not os.path.isdir(config.model.checkpoint):
        print(f"aot_compile: {config.model.checkpoint!r} is not a directory; compiling for model.name="
              f"{config.model.name!r}", file=sys.stderr)
        config.model.checkpoint = ""
    return runtime.model_config(config)


def compile_report(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, target: str) -> Report:
    model_config = _model_config(config)
    step = aot.lower_train_step(config, model_config, mesh, sharding.get_rules(config.mesh.rules))
    stats = step.lowered.compile().memory_analysis()
    params = step.state["params"]
    memory = dict(arguments=stats.argument_size_in_bytes, outputs=stats.output_size_in_bytes,
                  aliased=stats.alias_size_in_bytes, temporaries=stats.temp_size_in_bytes)
    # Donated state: outputs that reuse their argument's buffer are counted once.
    memory["total"] = memory["arguments"] + memory["outputs"] - memory["aliased"] + memory["temporaries"]
    flops = 3 * model_lib.forward_flops_per_token(model_config, step.seq_len) * step.tokens_per_step
    return Report(
        target=target, mesh=dict(mesh.shape),
        parameters=sum(math.prod(x.shape) for x in jax.tree.leaves(params)),
        param_bytes_per_device=sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize
                                   for x in jax.tree.leaves(params)),
        flops_per_device=flops / mesh.size, memory=memory)


def format_report(report: Report, memory_gib: float | None) -> str:
    mesh = " ".join(f"{axis}={size}" for axis, size in report.mesh.items())
    lines = [f"target: {report.target}; mesh {mesh}",
             f"parameters: {report.parameters:,d}, {report.param_bytes_per_device:,d} bytes of them per device",
             f"train step: {report.flops_per_device:.3e} FLOPs per device (model matmuls, 3 x forward)",
             "",
             f"{'per device':<12} {'bytes':>16} {'GiB':>9}"]
    for name, size in report.memory.items():
        lines.append(f"{name:<12} {size:>16,d} {size / 2**30:>9.3f}")
    if memory_gib:
        lines.append(f"the device has {memory_gib:g} GiB: total is {report.memory['total'] / 2**30 / memory_gib:.0%}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> Report:
    config, machine = parse_config(argv)
    try:
        mesh, target = target_mesh(config, machine)
        report = compile_report(config, mesh, target)
    except ValueError as e:  # a mesh the devices do not make, a batch the mesh does not divide
        raise SystemExit(f"aot_compile: {e}") from None
    print(format_report(report, config_lib.HARDWARE[machine].memory_gib if machine else None))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
