"""Training metrics to JSON lines and TensorBoard, without TensorFlow.

`MetricsWriter(workdir)` appends one JSON object per `write` call to `workdir/metrics.jsonl`,
`{"step": 12, "time": 1763700000.5, "loss": 0.71, ...}`, and decoded samples per `write_texts`
call to `workdir/samples.jsonl`. Both files are flushed every call, so a crash loses nothing that
was written. The same values go to TensorBoard event files in `workdir/tensorboard/` through
`tensorboardX` (which imports torch if it happens to be installed, never TensorFlow).

Non-finite values. JSON has no NaN or infinity, so they are written as `null` and `read_metrics`
turns `null` back into `nan` (a diverged loss stays visible as a gap in plots; whether it was
+inf, -inf or NaN is kept in TensorBoard, which stores the float as is).

Resuming. A run restarted from a checkpoint repeats the steps after it. `resume_step=N` drops the
JSONL records with `step >= N` and tells TensorBoard to hide its own events from those steps, so
both show each step once; `first_step_to_write` gives N for a run's restored checkpoint (or none).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
TENSORBOARD_DIR = "tensorboard"
_RESERVED_KEYS = ("step", "time")


def first_step_to_write(restored_step: int | None) -> int:
    """The first step a run (re)writes: the one after its restored checkpoint, or 0 without a checkpoint
    (a run killed before its first one starts over, and so do its records)."""
    return 0 if restored_step is None else restored_step + 1


class MetricsWriter:
    """Writes scalar metrics and text samples of one run; a no-op when `enabled=False`.

    In multi-host jobs construct it everywhere with `enabled=(jax.process_index() == 0)`, so the
    calls stay unconditional and only one process writes.
    """

    def __init__(self, workdir: str | os.PathLike[str], *, tensorboard: bool = True, enabled: bool = True,
                 resume_step: int | None = None):
        self.workdir = os.fspath(workdir)
        self.enabled = enabled
        self._files: dict[str, IO[str]] = {}
        self._tensorboard = None
        if not enabled:
            return
        os.makedirs(self.workdir, exist_ok=True)
        for name in (METRICS_FILE, SAMPLES_FILE):
            path = os.path.join(self.workdir, name)
            if resume_step is not None:
                _drop_records_from(path, resume_step)
            self._files[name] = _open_for_append(path)
        if tensorboard:
            # Imported here so that importing this module stays cheap where TensorBoard is off.
            import tensorboardX

            # flush_secs is moot: `write` flushes; purge_step hides the events a resumed run repeats.
            self._tensorboard = tensorboardX.SummaryWriter(os.path.join(self.workdir, TENSORBOARD_DIR),
                                                           purge_step=resume_step, flush_secs=3600)

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Records scalar `metrics` (Python, NumPy or JAX scalars) at `step`."""
        if not self.enabled:
            return
        step = int(step)
        values = {key: _scalar(key, value) for key, value in metrics.items()}
        self._append(METRICS_FILE, step, {key: _json_number(value) for key, value in values.items()})
        if self._tensorboard is not None:
            for key, value in values.items():
                self._tensorboard.add_scalar(key, float(value), step)
            self._tensorboard.flush()

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        """Records text such as decoded completions at `step`."""
        if not self.enabled:
            return
        step = int(step)
        texts = {key: str(text) for key, text in texts.items()}
        self._append(SAMPLES_FILE, step, texts)
        if self._tensorboard is not None:
            for key, text in texts.items():
                # TensorBoard renders text as Markdown and strips HTML-like tags such as <think>;
                # an indented code block shows the text verbatim.
                self._tensorboard.add_text(key, "\n".join("    " + line for line in text.split("\n")), step)
            self._tensorboard.flush()

    def _append(self, name: str, step: int, fields: Mapping[str, Any]) -> None:
        clashes = [key for key in fields if key in _RESERVED_KEYS]
        if clashes:
            raise ValueError(f"keys {clashes} are reserved in {name}")
        record = {"step": step, "time": time.time(), **fields}
        file = self._files[name]
        file.write(json.dumps(record, allow_nan=False) + "\n")
        file.flush()

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSONL file (or of `metrics.jsonl` in a workdir), with `null` read as `nan`.

    Lines that are not valid JSON (the tail of a write cut short by a crash) are skipped with a
    warning.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, METRICS_FILE)
    records, bad_lines = [], []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad_lines.append(number)
                continue
            records.append({key: math.nan if value is None else value for key, value in record.items()})
    if bad_lines:
        warnings.warn(f"{path}: skipped unreadable lines {bad_lines[:10]}{'...' if len(bad_lines) > 10 else ''}")
    return records


def _scalar(key: str, value: Any) -> int | float:
    array = np.asarray(value)  # also fetches JAX arrays from the device
    if array.size != 1:
        raise TypeError(f"metric {key!r} must be a scalar, got shape {array.shape}")
    if array.dtype.kind in "biu":
        return int(array.item())
    if array.dtype.kind == "c":
        raise TypeError(f"metric {key!r} is complex")
    try:
        return float(array.reshape(()))  # float kinds, and ml_dtypes such as bfloat16
    except (TypeError, ValueError) as error:
        raise TypeError(f"metric {key!r} is not a number: {value!r}") from error


def _json_number(value: int | float) -> int | float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _open_for_append(path: str) -> IO[str]:
    # A crash mid-write leaves a line without its newline; end it so the next record stays whole.
    ends_mid_line = False
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, "rb") as file:
            file.seek(-1, os.SEEK_END)
            ends_mid_line = file.read(1) != b"\n"
    file = open(path, "a", encoding="utf-8")
    if ends_mid_line:
        file.write("\n")
    return file


def _drop_records_from(path: str, first_dropped_step: int) -> None:
    """Rewrites `path` without records at `first_dropped_step` or later (and unreadable lines)."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as file:
        lines = file.readlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] < first_dropped_step:
                kept.append(line if line.endswith("\n") else line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    if len(kept) == len(lines):
        return
    tmp_path = path + ".tmp"
    with open(tmp_path, "w", encoding="utf-8") as file:
        file.writelines(kept)
    os.replace(tmp_path, path)  # atomic: a crash here leaves the old file or the new one
