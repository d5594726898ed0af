"""Training curves from `metrics.jsonl` as one PNG: a small panel per metric, step on the x axis.

Uses matplotlib's object API with the Agg canvas, so it needs no display and does not touch
pyplot's global state (safe to call from a training process).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from r1jax.metrics import read_metrics

# Keys plotted by default, in this order: every metric whose name matches one of these.
DEFAULT_KEY_PATTERNS = (
    r"reward",
    r"accuracy",
    r"(response|completion)_?len",
    r"(?<![a-z])kl(?![a-z])",  # `kl`, `policy/kl`, `kl_mean`; not `kl` inside another word
    r"entropy",
)
PANEL_INCHES = (4.0, 3.0)
DPI = 100
MAX_COLUMNS = 3


def plot_metrics(metrics: str | os.PathLike[str] | Iterable[Mapping[str, Any]], png_path: str | os.PathLike[str],
                 *, keys: Sequence[str] | None = None) -> str:
    """Draws `keys` (default: those matching `DEFAULT_KEY_PATTERNS`) against step; returns the PNG path.

    `metrics` is a metrics.jsonl file, a workdir holding one, or records as `read_metrics` returns
    them. Where a step appears more than once (a resumed run repeating steps), the later value
    wins. NaN values leave gaps; a requested key without data gets an empty panel saying so.
    Each panel is `PANEL_INCHES` at `DPI`, at most `MAX_COLUMNS` panels a row.
    """
    records = read_metrics(metrics) if isinstance(metrics, (str, os.PathLike)) else list(metrics)
    keys = list(keys) if keys is not None else default_keys(records)
    if not keys:
        raise ValueError(f"nothing to plot: no metric matches {DEFAULT_KEY_PATTERNS}; pass keys explicitly")

    columns = min(MAX_COLUMNS, len(keys))
    rows = math.ceil(len(keys) / columns)
    figure = Figure(figsize=(PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows), dpi=DPI, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, key in zip(axes, keys):
        steps, values = _series(records, key)
        ax.set_title(key if not values else f"{key} (last {values[-1]:.4g})", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if not steps:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
            continue
        # Markers when sparse (e.g. evals every few hundred steps), so single points stay visible.
        ax.plot(steps, values, marker="o" if len(steps) <= 30 else None, markersize=3, linewidth=1.2)
    for ax in axes[len(keys):]:
        ax.set_visible(False)

    png_path = os.fspath(png_path)
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    figure.savefig(png_path, format="png")
    return png_path


def default_keys(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Numeric metric names matching `DEFAULT_KEY_PATTERNS`, grouped by pattern, in first-seen order."""
    seen: dict[str, None] = {}
    for record in records:
        for key, value in record.items():
            if key not in ("step", "time") and _is_number(value):
                seen.setdefault(key)

    def first_pattern(key: str) -> int | None:
        return next((i for i, pattern in enumerate(DEFAULT_KEY_PATTERNS) if re.search(pattern, key.lower())), None)

    matched = [key for key in seen if first_pattern(key) is not None]
    return sorted(matched, key=first_pattern)  # stable: first-seen order within a pattern


def _series(records: Iterable[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    by_step: dict[int, float] = {}
    for record in records:
        if key in record and "step" in record and (record[key] is None or _is_number(record[key])):
            by_step[int(record["step"])] = math.nan if record[key] is None else float(record[key])
    steps = sorted(by_step)
    return steps, [by_step[step] for step in steps]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
