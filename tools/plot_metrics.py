"""Plot a run's training curves from WORKDIR/metrics.jsonl into a PNG.

    python tools/plot_metrics.py WORKDIR [--keys reward/mean,eval/accuracy] [--out curves.png]

Without --keys it draws the metrics that look like rewards, accuracies, response lengths, KL and
entropy; --out defaults to WORKDIR/metrics.png.
"""
from __future__ import annotations

import argparse
import os
import sys

from r1jax.plotting import plot_metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir", help="run directory holding metrics.jsonl (or the .jsonl file itself)")
    parser.add_argument("--keys", default=None, help="comma-separated metric names, in panel order")
    parser.add_argument("--out", default=None, help="PNG path (default: WORKDIR/metrics.png)")
    args = parser.parse_args(argv)

    keys = [key.strip() for key in args.keys.split(",") if key.strip()] if args.keys else None
    run_dir = args.workdir if os.path.isdir(args.workdir) else os.path.dirname(args.workdir)
    out = args.out or os.path.join(run_dir, "metrics.png")
    try:
        print(plot_metrics(args.workdir, out, keys=keys))
    except (FileNotFoundError, ValueError) as error:
        print(f"plot_metrics: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
