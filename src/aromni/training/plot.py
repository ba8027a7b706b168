"""Loss curves from a metrics JSONL file (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from aromni.errors import InputError
from aromni.utils.extras import optional
from aromni.utils.io import JSONValue, atomic_path


def ema(values: Sequence[float], smooth: float) -> np.ndarray:
    """Bias-corrected exponential moving average (TensorBoard-style); ``smooth = 0`` returns the raw values."""
    out, acc = np.empty(len(values)), 0.0
    for i, v in enumerate(values):
        acc = smooth * acc + (1.0 - smooth) * float(v)
        out[i] = acc / (1.0 - smooth ** (i + 1)) if smooth > 0 else float(v)
    return out


def plot_metrics(runs: Mapping[str, Sequence[Mapping[str, JSONValue]]], out: str | Path, *, smooth: float = 0.9,
                 keys: Sequence[str] = ("loss", "ntp", "perc"), title: str | None = None) -> Path:
    """Draw one panel per metric in ``keys`` (raw faint, smoothed solid, held-out ``val_<key>`` as markers),
    one line per run; write a PNG."""
    optional("matplotlib", extra="train", feature="loss plots").use("Agg")
    plt = optional("matplotlib.pyplot", extra="train", feature="loss plots")

    present = [k for k in keys if any(k in r for recs in runs.values() for r in recs)]
    if not present:
        raise InputError(f"no records with any of {list(keys)}", "pass a metrics.jsonl written by `aromni train`")
    labels = {"loss": "total", "ntp": "weighted NTP", "perc": "perceptual", "lr": "learning rate"}
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.4), squeeze=False)
    for ax, key in zip(axes[0], present):
        for name, recs in runs.items():
            pts = [(r["step"], r[key]) for r in recs if r.get(key) is not None
                   and not (key == "perc" and r.get("perc_positions") == 0)]  # no image positions: no value
            if not pts:
                continue
            x, y = np.asarray(pts).T
            line = ax.plot(x, y, alpha=0.25, linewidth=0.8)[0]
            ax.plot(x, ema(y, smooth), color=line.get_color(), linewidth=1.6, label=name)
            val = [(r["step"], r["val_" + key]) for r in recs if r.get("val_" + key) is not None]
            if val:  # held-out values (eval.every): markers on a dashed line, not smoothed
                vx, vy = np.asarray(val).T
                ax.plot(vx, vy, "o--", color=line.get_color(), markersize=3, linewidth=1,
                        label=f"{name} (held out)" if len(runs) > 1 else "held out")
        ax.set_title(labels.get(key, key))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(runs) > 1 or ax.get_legend_handles_labels()[1].count("held out"):
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out, suffix=out.suffix) as tmp:
        fig.savefig(tmp, dpi=90, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    return out
