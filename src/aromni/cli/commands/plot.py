"""``aromni plot METRICS.jsonl [...] --out loss.png``: loss curves (weighted NTP, perceptual, total; smoothed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from aromni.cli.common import check_output_path, finite_float
from aromni.errors import InputError
from aromni.training.metrics import read_metrics
from aromni.training.plot import plot_metrics


def _plot(args: argparse.Namespace) -> int:
    check_output_path(args.out, args.overwrite, FIGURE_SUFFIXES)
    runs = {}
    for f in args.metrics:
        path = Path(f)
        if path.is_dir():
            path = path / "metrics.jsonl"
        if not path.is_file():
            raise InputError(f"{path}: no such metrics file", "pass OUT/metrics.jsonl of a training run")
        name = path.parent.name if path.name == "metrics.jsonl" else path.stem
        runs[name if name not in runs else str(path)] = read_metrics(path)
    keys = [k.strip() for k in args.keys.split(",") if k.strip()]
    out = plot_metrics(runs, args.out, smooth=args.smooth, keys=keys, title=args.title)
    print(f"wrote {out}")
    return 0


FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".webp")


def _smoothing(text: str) -> float:
    x = finite_float(text)
    if not 0 <= x < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return x


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plot", help="plot training loss curves from metrics.jsonl files")
    p.add_argument("metrics", nargs="+", help="metrics.jsonl files (or run directories); one line per run")
    p.add_argument("--out", required=True, help="output image (.png, .pdf, .svg, .jpg, .webp)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--smooth", type=_smoothing, default=0.9, help="EMA smoothing in [0, 1) (default 0.9)")
    p.add_argument("--keys", default="loss,ntp,perc", help="metrics to draw, comma-separated")
    p.add_argument("--title", default=None)
    p.set_defaults(func=_plot)
