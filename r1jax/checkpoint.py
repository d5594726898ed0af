"""Training-state checkpoints on Orbax, and a SIGTERM guard for clean preemption.

A checkpoint step directory holds two items: `state`, any pytree of arrays (params, optax state,
step counter, typed PRNG keys from `jax.random.key`), and `metadata`, a JSON dict (data position,
config, ...). The trainer resumes with

    with Checkpointer(workdir / "checkpoints", save_interval_steps=..., max_to_keep=...) as ckpt:
        if ckpt.latest_step() is not None:
            state, metadata = ckpt.restore(abstract_state)  # ShapeDtypeStructs with shardings

`restore` reads every array straight onto the sharding of its abstract leaf, which may be a
different mesh or layout from the one it was saved with: each device reads only its own shards.

Typed PRNG keys need no conversion: Orbax stores the raw key data with the key implementation
and restores a typed key array (checked in tests/test_checkpoint.py).

Partial saves. Orbax writes a step into `<step>.orbax-checkpoint-tmp` and renames it to `<step>`
only after every item is written (it also writes `commit_success.txt`, the commit marker on object
stores such as GCS, which have no atomic rename). `latest_step`/`all_steps` only list finished step directories, so a process killed
mid-save leaves at most an ignored temporary directory, which the next `Checkpointer` deletes on
start (`cleanup_tmp_directories`). tests/test_checkpoint.py SIGKILLs a child during an async save.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from r1jax.data import records

PyTree = Any

_STATE = "state"
_METADATA = "metadata"


class Checkpointer:
    """Saves and restores `(state, metadata)` under `directory`, one subdirectory per step.

    `save` is asynchronous by default: it returns once the arrays are copied off the devices, so
    the caller may donate or overwrite `state` right away; the files are written in a background
    thread. The next `save`, `wait_until_finished` and `close` wait for it.
    """

    def __init__(self, directory: str | os.PathLike[str], *, save_interval_steps: int, max_to_keep: int | None,
                 async_save: bool = True):
        if save_interval_steps < 1:
            raise ValueError(f"save_interval_steps must be >= 1, got {save_interval_steps}")
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1 or None (keep all), got {max_to_keep}")
        options = ocp.CheckpointManagerOptions(
            # Only the interval (no Orbax "save the first step" default), plus a save when JAX's
            # multi-host preemption notice reaches a sync point; that one is inert on a single host.
            save_decision_policy=checkpoint_managers.AnySavePolicy([
                checkpoint_managers.FixedIntervalPolicy(save_interval_steps),
                checkpoint_managers.PreemptionCheckpointingPolicy(),
            ]),
            preservation_policy=checkpoint_managers.LatestN(n=max_to_keep),
            enable_async_checkpointing=async_save,
            # Orbax's background directory creation leaves its other threads waiting out a 5-minute
            # barrier when the mkdir fails (a full or read-only disk); created in the call, it fails at once.
            async_options=ocp.AsyncOptions(create_directories_asynchronously=False),
            cleanup_tmp_directories=True,  # leftovers of saves that were killed midway
            create=True,
        )
        self.directory = os.fspath(directory)
        self._manager = ocp.CheckpointManager(os.path.abspath(self.directory), options=options,
                                              item_names=(_STATE, _METADATA))

    def latest_step(self) -> int | None:
        """The newest fully written step, or None if there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Every fully written step, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: PyTree, metadata: Mapping[str, Any] | None = None, *,
             force: bool = False) -> bool:
        """Saves if `step` is a multiple of the interval, or whenever `force`; True if it saved.

        A step that already has a checkpoint is skipped (returns False), e.g. a forced save on
        preemption right after resuming from that very step.
        """
        step = int(step)
        if step in self._manager.all_steps():
            return False
        args = ocp.args.Composite(**{_STATE: ocp.args.StandardSave(state),
                                     _METADATA: ocp.args.JsonSave(dict(metadata or {}))})
        return self._manager.save(step, args=args, force=force)

    def restore(self, abstract_state: PyTree, step: int | None = None) -> tuple[PyTree, dict[str, Any]]:
        """`(state, metadata)` of `step` (default: the latest), each array placed on its sharding.

        `abstract_state` has the structure of the saved state; its leaves are `jax.ShapeDtypeStruct`s
        with a `sharding` (or arrays, whose sharding is used). Shapes and dtypes must match the saved
        ones; the shardings are free.
        """
        if step is None:
            step = self.latest_step()
            if step is None:
                raise FileNotFoundError(f"no finished checkpoint in {self.directory}")
        target = jax.tree.map(_abstract_leaf, abstract_state)
        args = ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(target), _METADATA: ocp.args.JsonRestore()})
        try:
            restored = self._manager.restore(int(step), args=args)
        except Exception as e:  # Orbax and TensorStore raise anything from KeyError to a bare Exception
            earlier = [s for s in self.all_steps() if s < step]
            instead = f"resume from step {earlier[-1]}" if earlier else "start over"
            raise CheckpointUnreadable(
                f"{os.path.join(self.directory, str(step))} cannot be restored into this run's state "
                f"({type(e).__name__}: {str(e)[:300]}). If it is damaged, move it away to {instead}; if the "
                "model or optimizer changed since it was saved, use another workdir") from e
        return restored[_STATE], dict(restored[_METADATA] or {})

    def wait_until_finished(self) -> None:
        """Blocks until the last asynchronous save is on disk and committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases Orbax's background resources."""
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _abstract_leaf(leaf: Any) -> Any:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        if leaf.sharding is None:
            raise ValueError(f"abstract leaf {leaf} has no sharding; restore needs one for every array")
        return leaf
    if isinstance(leaf, jax.Array):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
    return leaf


class CheckpointUnreadable(RuntimeError):
    """A step directory that cannot be restored; the message says which and what to do."""


# A run that saved on a signal exits with this (EX_TEMPFAIL): the same command continues it.
STOPPED_EXIT_CODE = 75


class StoppedBySignal(Exception):
    """A mode (generate, distill) or a stage before a mode's own loop (GRPO's in-run pretraining) saved
    its progress on a signal and stopped.

    `r1jax.main` prints the message, which says where the progress is, and exits with `STOPPED_EXIT_CODE`
    (the GRPO trainer catches it itself and returns a summary with `stopped=True`).
    """


class PreemptionGuard:
    """Turns SIGTERM (and SIGINT by default) into a flag the training loop polls.

    Schedulers send SIGTERM some seconds before killing a job. Saving from inside a signal handler
    could interrupt a step halfway, so the handler only sets `requested`; the loop checks it after
    each step, saves with `force=True`, waits for the save and returns. Previous handlers come back
    on exit, and an enclosing guard among them (a pipeline's, around its stages) is told of a signal
    this guard caught, so a signal in a stage's last step still stops the pipeline; a guard entered
    after its enclosing guard caught a signal (during a stage's setup) starts with it requested.
    Must be entered on the main thread (a Python rule for signal handlers).

    On multi-host jobs every process must stop at the same step, though the signal may reach the hosts
    at different ones: the loop asks `stop_agreed()` once per step, which every process answers alike.
    """

    def __init__(self, signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)):
        self._signals = tuple(signals)
        self._previous: dict[signal.Signals, Any] = {}
        self.requested = False  # set by the handler; the loop polls it
        self.received: signal.Signals | None = None

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        self.received = signal.Signals(signum)
        self.requested = True

    def stop_agreed(self) -> bool:
        """Whether to save and stop after this step: a signal reached this process or, in a multi-process
        job, any of them (a gather, so every process must call it at the same step)."""
        if jax.process_count() == 1:
            return self.requested
        return bool(multihost_utils.process_allgather(np.int32(self.requested)).any())

    def __enter__(self) -> PreemptionGuard:
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._handle)
            enclosing = getattr(self._previous[sig], "__self__", None)
            if isinstance(enclosing, PreemptionGuard) and enclosing.requested:  # a signal before this guard began
                self.requested, self.received = True, enclosing.received
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            # None means the old handler was installed outside Python; the default is the closest.
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            if sig == self.received and isinstance(getattr(handler, "__self__", None), PreemptionGuard):
                handler(sig, None)
        self._previous.clear()


def batch_starts(total: int, batch_size: int, *, first_batch: int = 0, preemption: PreemptionGuard | None = None,
                 what: str, unit: str, saved_in: str = "") -> Iterator[int]:
    """The first index of every batch of `total` items from batch `first_batch` on, for loops that keep their
    progress a batch at a time (generate, distill, evaluate).

    Before a batch, once `preemption` has seen a signal, raises StoppedBySignal saying how far `what` got
    and where the batches done are kept (`saved_in`), or that the same command starts it again.
    """
    for first in range(first_batch * batch_size, total, batch_size):
        if preemption is not None and preemption.requested:
            then = (f"{saved_in} holds them; the same command continues it" if saved_in
                    else "the same command runs it again")
            raise StoppedBySignal(f"{what} stopped by {preemption.received.name} after {first} of {total} {unit}; "
                                  f"{then}")
        yield first


_SHOWN_CONFIG_CHANGES = 5


def shown_changes(changes: list[str]) -> str:
    """The first of `records.json_changes`'s lines, joined for a one-line message."""
    shown = "; ".join(changes[:_SHOWN_CONFIG_CHANGES])
    return shown + ("; ..." if len(changes) > _SHOWN_CONFIG_CHANGES else "")


def prepare_workdir(workdir: str, config_json: str, *, write: bool, allow_config_change: bool) -> str | None:
    """Creates `workdir` and saves the config there (if `write`); the problem if it cannot, or if the workdir
    holds a run of another config (unless `allow_config_change`): resuming it would mix two runs."""
    path = os.path.join(workdir, "config.json")
    try:
        if os.path.isfile(path) and not allow_config_change:
            with open(path) as f:
                changes = records.json_changes(json.load(f), json.loads(config_json))
            if changes:
                return (f"{workdir} holds a run of another config ({shown_changes(changes)}); use another "
                        "workdir, or --allow_config_change to continue that run with this config")
        os.makedirs(workdir, exist_ok=True)
        if write:  # beside, then renamed: the other processes of a job may be reading it
            with open(path + ".partial", "w") as f:
                f.write(config_json)
            os.replace(path + ".partial", path)
    except (OSError, ValueError) as e:  # ValueError: a config.json that is not JSON
        return f"{workdir}: {e}"
    return None


# What a run saves as it goes: checkpoint steps, the progress of sample files, finished stages, exports.
_PROGRESS_PATTERNS = ("**/*checkpoints/[0-9]*", "**/*.progress", "**/stage.json", "**/pretrain.json", "**/hf_export")


class WorkdirSnapshot(NamedTuple):
    config_json: str | None  # config.json's content (None: there was none)
    progress: dict[str, float]  # saved progress under the workdir: path -> modification time


def snapshot_workdir(workdir: str) -> WorkdirSnapshot:
    """The workdir's config.json and saved progress, taken before a run, for `restore_config_if_nothing_saved`."""
    progress = {path: os.path.getmtime(path) for pattern in _PROGRESS_PATTERNS
                for path in glob.glob(os.path.join(glob.escape(workdir), pattern), recursive=True)}
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            return WorkdirSnapshot(f.read(), progress)
    except OSError:
        return WorkdirSnapshot(None, progress)


def restore_config_if_nothing_saved(workdir: str, before: WorkdirSnapshot) -> None:
    """After a run that failed: if it saved no progress since `before`, puts config.json back as it was (removes it
    if there was none), so that the corrected command is not refused as another run's. Progress it saved keeps the
    config that made it."""
    if snapshot_workdir(workdir).progress != before.progress:
        return
    path = os.path.join(workdir, "config.json")
    if before.config_json is None:
        if os.path.exists(path):
            os.remove(path)
    else:
        with open(path, "w") as f:
            f.write(before.config_json)
