"""MetricsWriter (JSONL + TensorBoard event files), read_metrics, and the training-curve plots."""

import glob
import json
import math
import os
import struct
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from r1jax.metrics import MetricsWriter, first_step_to_write, read_metrics
from r1jax.plotting import PANEL_INCHES, DPI, default_keys, plot_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read_events(workdir) -> list[event_pb2.Event]:
    """Every event in the run's TensorBoard files, parsed from the TFRecord framing by hand."""
    events = []
    for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))):
        with open(path, "rb") as file:
            data = file.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            offset += 8 + 4  # length, masked crc32c of the length
            events.append(event_pb2.Event.FromString(data[offset:offset + length]))
            offset += length + 4  # payload, masked crc32c of the payload
    return events


def _scalars(events) -> dict[str, list[tuple[int, float]]]:
    by_tag: dict[str, list[tuple[int, float]]] = {}
    for event in events:
        for value in event.summary.value:
            if value.WhichOneof("value") == "simple_value":
                by_tag.setdefault(value.tag, []).append((event.step, value.simple_value))
    return by_tag


def test_jsonl_and_tensorboard_scalars(tmp_path):
    with MetricsWriter(tmp_path) as writer:
        writer.write(1, {"loss": 2.5, "reward/mean": np.float32(0.25), "tokens": 128})
        writer.write(2, {"loss": jnp.float32(1.5), "reward/mean": jnp.bfloat16(0.5), "tokens": np.int64(256),
                         "grad_norm": float("nan"), "kl": float("inf")})
        # Flushed on every call: readable before close.
        assert len(read_metrics(tmp_path)) == 2

    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    raw = [json.loads(line) for line in lines]  # strict JSON: no NaN/Infinity tokens
    assert raw[0]["step"] == 1 and raw[0]["loss"] == 2.5 and raw[0]["reward/mean"] == 0.25
    assert raw[0]["tokens"] == 128 and isinstance(raw[0]["tokens"], int)
    assert raw[1]["grad_norm"] is None and raw[1]["kl"] is None and raw[1]["tokens"] == 256
    assert all(isinstance(r["time"], float) for r in raw)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert math.isnan(records[1]["grad_norm"]) and records[1]["loss"] == 1.5

    scalars = _scalars(_read_events(tmp_path))
    assert scalars["loss"] == [(1, 2.5), (2, 1.5)]
    assert scalars["reward/mean"] == [(1, 0.25), (2, 0.5)]
    assert scalars["tokens"] == [(1, 128.0), (2, 256.0)]
    assert math.isnan(scalars["grad_norm"][0][1]) and scalars["kl"] == [(2, math.inf)]


def test_texts_go_to_samples_and_tensorboard(tmp_path):
    completion = "<think>2+2</think>\n<answer>4</answer>"
    with MetricsWriter(tmp_path) as writer:
        writer.write_texts(7, {"sample/0": completion})
    (record,) = read_metrics(tmp_path / "samples.jsonl")
    assert record["step"] == 7 and record["sample/0"] == completion
    texts = [(event.step, value) for event in _read_events(tmp_path) for value in event.summary.value
             if value.metadata.plugin_data.plugin_name == "text"]
    (step, value), = texts
    assert step == 7 and value.tag.startswith("sample/0")
    # Indented as a Markdown code block so that the tags stay visible.
    assert value.tensor.string_val[0].decode() == "    <think>2+2</think>\n    <answer>4</answer>"


def test_disabled_writer_writes_nothing(tmp_path):
    with MetricsWriter(tmp_path / "run", enabled=False) as writer:
        writer.write(1, {"loss": 1.0})
        writer.write_texts(1, {"sample": "x"})
    assert not (tmp_path / "run").exists()


def test_without_tensorboard_and_bad_values(tmp_path):
    with MetricsWriter(tmp_path, tensorboard=False) as writer:
        with pytest.raises(TypeError, match="scalar"):
            writer.write(1, {"loss": np.ones(3)})
        with pytest.raises(TypeError, match="not a number"):
            writer.write(1, {"loss": "low"})
        with pytest.raises(ValueError, match="reserved"):
            writer.write(1, {"step": 3})
        writer.write(1, {"ok": True})
    assert not (tmp_path / "tensorboard").exists()
    assert [r["ok"] for r in read_metrics(tmp_path)] == [1]


def test_a_run_killed_before_its_first_checkpoint_rewrites_every_step_once(tmp_path):
    with MetricsWriter(tmp_path, resume_step=first_step_to_write(None)) as writer:
        for step in range(3):
            writer.write(step, {"loss": float(step)})
    with MetricsWriter(tmp_path, resume_step=first_step_to_write(None)) as writer:  # no checkpoint: from 0
        writer.write(0, {"loss": 10.0})
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(0, 10.0)]


def test_resume_drops_repeated_steps_and_survives_a_cut_line(tmp_path):
    with MetricsWriter(tmp_path) as writer:
        for step in range(1, 6):
            writer.write(step, {"loss": float(step)})
    with open(tmp_path / "metrics.jsonl", "a") as file:
        file.write('{"step": 6, "lo')  # a crash in the middle of a write
    with pytest.warns(UserWarning, match="unreadable"):
        assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]

    # Restarted from the checkpoint of step 3: steps 4 and on are done again.
    with MetricsWriter(tmp_path, resume_step=first_step_to_write(3)) as writer:
        writer.write(4, {"loss": 40.0})
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]
    purges = [e.step for e in _read_events(tmp_path) if e.HasField("session_log")]
    assert purges == [4]  # TensorBoard hides older events from step 4 on

    # Appending after a cut line without resume_step keeps the new record whole.
    with open(tmp_path / "metrics.jsonl", "a") as file:
        file.write('{"step": 5, "lo')
    with MetricsWriter(tmp_path, tensorboard=False) as writer:
        writer.write(5, {"loss": 50.0})
    with pytest.warns(UserWarning):
        assert read_metrics(tmp_path)[-1]["loss"] == 50.0


def _png_size(path) -> tuple[int, int]:
    with open(path, "rb") as file:
        header = file.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def _synthetic_records() -> list[dict]:
    records = []
    for step in range(1, 41):
        record = {"step": step, "time": 1000.0 + step, "reward/mean": step / 40, "loss": 1 / step,
                  "response_length/mean": 100 + step, "policy/kl": 0.01 * step, "entropy": 2.0 - step / 40}
        if step == 10:
            record["reward/mean"] = math.nan
        records.append(record)
        if step % 20 == 0:
            records.append({"step": step, "eval/accuracy": step / 100})
    return records


def test_default_keys_pick_the_rl_curves():
    keys = default_keys(_synthetic_records() + [{"step": 1, "kl_coef_schedule_name": "x", "skl": 1.0}])
    assert keys == ["reward/mean", "eval/accuracy", "response_length/mean", "policy/kl", "entropy"]


def test_plot_metrics_png_size_and_missing_keys(tmp_path):
    records = _synthetic_records()
    path = plot_metrics(records, tmp_path / "plots" / "curves.png")
    # Five default panels: three columns by two rows.
    assert _png_size(path) == (3 * PANEL_INCHES[0] * DPI, 2 * PANEL_INCHES[1] * DPI)

    path = plot_metrics(records, tmp_path / "two.png", keys=["loss", "not_logged"])
    assert _png_size(path) == (2 * PANEL_INCHES[0] * DPI, PANEL_INCHES[1] * DPI)
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_metrics([{"step": 1, "loss": 1.0}], tmp_path / "none.png")


def test_plot_cli_reads_workdir(tmp_path):
    with MetricsWriter(tmp_path, tensorboard=False) as writer:
        for record in _synthetic_records():
            writer.write(record["step"], {k: v for k, v in record.items() if k not in ("step", "time")})
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "plot_metrics.py"), str(tmp_path),
                             "--keys", "loss,reward/mean"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "metrics.png")
    assert _png_size(tmp_path / "metrics.png") == (2 * PANEL_INCHES[0] * DPI, PANEL_INCHES[1] * DPI)
