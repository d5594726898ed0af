"""Multi-host runs: JAX's distributed runtime, and the few places where the processes of a job differ.

Every host runs the same command; its process drives the host's devices, and arrays span the devices of
all processes (the mesh is global). `initialize` joins a process to the job before JAX computes anything:

- explicit settings, the flags of `r1jax.main` or the environment (`R1JAX_COORDINATOR_ADDRESS`,
  `R1JAX_NUM_PROCESSES`, `R1JAX_PROCESS_ID`), for GPU clusters without a scheduler JAX knows;
- else JAX's own cluster detection (Cloud TPU pods, SLURM, Open MPI, Kubernetes), when it finds more than
  one process: `jax.distributed.initialize()` with no arguments;
- else nothing: a single process, exactly as without this module.

Every process computes the same host-side values (batches, rewards, decisions) and calls the same jitted
functions and orbax saves; host data reaches the devices with `host_to_global`, each process transferring
only the rows on its own devices. Only process 0 writes files the processes share (metrics, samples,
exports, the tokenizer and generated data) and prints; the workdir must be on a filesystem every host sees
(orbax needs that too).

`set_cpu_devices`, also called before JAX starts, splits a CPU host into several devices (`--cpu_devices`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

ENV_COORDINATOR_ADDRESS = "R1JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "R1JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "R1JAX_PROCESS_ID"
ENV_CPU_DEVICES = "R1JAX_CPU_DEVICES"

# The modes whose every file write and host-side decision is made the same way on all processes.
MULTIHOST_MODES = ("sft", "grpo")


class SetupError(ValueError):
    """The distributed settings do not describe a job."""


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, environ: Mapping[str, str] = os.environ) -> None:
    """Joins this process to its multi-process job, if it is part of one (module docstring).

    Each setting left None is read from `environ`. Raises SetupError for an incomplete or inconsistent
    set, before anything starts.
    """
    address = coordinator_address if coordinator_address is not None else environ.get(ENV_COORDINATOR_ADDRESS)
    count = num_processes if num_processes is not None else _env_int(environ, ENV_NUM_PROCESSES)
    index = process_id if process_id is not None else _env_int(environ, ENV_PROCESS_ID)
    if address is None and count is None and index is None:
        if _cluster_process_count() > 1:
            jax.distributed.initialize()
        return
    given = {"coordinator address": address, "number of processes": count, "process id": index}
    missing = [name for name, value in given.items() if value in (None, "")]
    if missing:
        raise SetupError(f"a multi-process run needs all three settings, but the {' and the '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} missing: pass --coordinator_address=host:port, "
                         f"--num_processes and --process_id (or set {ENV_COORDINATOR_ADDRESS}, {ENV_NUM_PROCESSES} "
                         f"and {ENV_PROCESS_ID})")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():  # JAX fails on it with a bare IndexError
        source = "--coordinator_address" if coordinator_address is not None else ENV_COORDINATOR_ADDRESS
        raise SetupError(f"{source}: give host:port, got {address!r}")
    if count < 1:
        raise SetupError(f"the number of processes is {count}; it must be at least 1")
    if not 0 <= index < count:
        raise SetupError(f"process id {index} is not in [0, {count}): ids count from 0 to the number of "
                         "processes minus 1")
    jax.distributed.initialize(address, num_processes=count, process_id=index)


def set_cpu_devices(count: int | None = None, environ: Mapping[str, str] = os.environ) -> None:
    """Presents this host's CPU as `count` JAX devices (`jax_num_cpu_devices`); None reads `R1JAX_CPU_DEVICES`,
    and neither leaves JAX's default (one device, or `--xla_force_host_platform_device_count`).

    XLA:CPU runs most small ops of a program on one thread, so a small model's decode loop keeps one core
    busy; with a device per core, a mesh's data axis runs a shard of the batch on each, in parallel.
    Raises SetupError for a count below 1, or once JAX has started with another count.
    """
    if count is None:
        count = _env_int(environ, ENV_CPU_DEVICES)
        if count is None:
            return
    if count < 1:
        raise SetupError(f"{count} CPU devices: give at least 1")
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX has started (a notebook, a test): fine if it has the devices asked for
        started_with = len(jax.devices("cpu"))
        if started_with != count:
            raise SetupError(f"{count} CPU devices asked for, but JAX already runs with {started_with}; set it "
                             "before JAX computes anything, e.g. in a new process") from None


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise SetupError(f"{name}={value!r} is not an integer") from None


def _cluster_process_count() -> int:
    """How many processes the scheduler JAX detects here launched (1 outside any)."""
    # JAX reports this only after initializing; its cluster detection is the same code without the side
    # effects. Opt-in methods (mpi4py) are skipped, as `jax.distributed.initialize()` skips them.
    from jax._src import clusters

    for cluster in clusters.ClusterEnv._cluster_types:
        if not cluster.opt_in_only_method and cluster.is_env_present():
            return cluster.get_process_count()
    return 1


def is_main_process() -> bool:
    """True on the process that writes the shared files and prints (process 0)."""
    return jax.process_index() == 0


def silence_other_processes() -> None:
    """Sends the standard output of every process but the main one to /dev/null (stderr stays).

    At the file descriptor, so that native libraries' prints (gloo's) go too."""
    if not is_main_process():
        sys.stdout.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier `name`; nothing to wait for in a single process."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def main_process_first(name: str):
    """Runs the block on the main process, then on the others: for a block that writes files only when
    they are missing (a dataset built on first use), so that only the main process writes them."""
    if not is_main_process():
        barrier(name)
    yield
    if is_main_process():
        barrier(name)


def host_to_global(tree: Any, shardings: Any) -> Any:
    """Global arrays of the NumPy arrays of `tree`, which every process holds whole (or as views that read
    when indexed, `sft.RowView`), on `shardings` (a matching tree); each process transfers only the pieces
    that live on its own devices."""
    return jax.tree.map(lambda x, s: jax.make_array_from_callback(x.shape, s, lambda index: x[index]), tree, shardings)


def to_host(tree: Any) -> Any:
    """NumPy copies of the arrays of `tree`, also of those spread over the devices of several processes
    (gathered: in a multi-process run every process must call it at the same point)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)

    def fetch(x):
        if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
            return multihost_utils.process_allgather(x, tiled=True)
        return np.asarray(jax.device_get(x))

    return jax.tree.map(fetch, tree)


def split_rows_across_processes(fn: Callable[[np.ndarray], Any], num_rows: int) -> Any:
    """`fn(np.arange(num_rows))`, with each process computing `fn` on an equal share of the rows.

    `fn` takes row indices and returns a pytree of NumPy arrays whose leading axis follows them; every
    process gets the whole result, bit for bit (float64 stays float64, which a JAX array would round).
    """
    count = jax.process_count()
    if count == 1:
        return fn(np.arange(num_rows))
    share = -(-num_rows // count)
    # Equal shares for process_allgather: the last one repeats the last row where the rows run out.
    rows = np.minimum(jax.process_index() * share + np.arange(share), num_rows - 1)

    def gather(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x)
        as_bytes = x.reshape(share, -1).view(np.uint8)
        gathered = multihost_utils.process_allgather(as_bytes).reshape(count * share, -1)
        return gathered.view(x.dtype).reshape(count * share, *x.shape[1:])[:num_rows]

    return jax.tree.map(gather, fn(rows))
