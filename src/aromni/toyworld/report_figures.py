"""Figures of the toy-world eval report (matplotlib, headless): generated images next to their prompts,
spectrograms of generated vs reference speech, ground truth vs VQGAN reconstruction, loss curves."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aromni.tokenizers.speech.mel import LogMel, MelConfig
from aromni.training.metrics import read_metrics
from aromni.training.plot import plot_metrics
from aromni.utils.extras import optional
from aromni.utils.io import atomic_path


def _plt() -> Any:
    matplotlib = optional("matplotlib", extra="eval", feature="report figures")
    matplotlib.use("Agg")
    return optional("matplotlib.pyplot", extra="eval", feature="report figures")


def _save(fig: Any, out: Path, dpi: int = 90) -> Path:
    plt = _plt()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return out


def clean(text: str) -> str:
    """Printable text for a figure (an untrained model's byte-level BPE output can hold control bytes)."""
    return "".join(ch if ch.isprintable() or ch == "\n" else "·" for ch in str(text))


def describe(read: dict[str, str] | None) -> str:
    """A judge read as a short phrase ("big red circle, top left, on white")."""
    if read is None:
        return "no image"
    return f"{read['size']} {read['color']} {read['shape']}, {read['position']}, on {read['background']}"


def _show(ax: Any, image: Any, title: str, ok: bool | None = None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if image is None:
        ax.text(0.5, 0.5, "no image", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.imshow(np.asarray(image.convert("RGB") if hasattr(image, "convert") else image), interpolation="nearest")
    color = {True: "green", False: "red", None: "black"}[ok]
    ax.set_title(textwrap.fill(clean(title), 26), fontsize=7, color=color)
    if ok is not None:
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(2)


def image_grid(rows: Sequence[Mapping[str, object]], columns: Sequence[tuple[str, str | None]], out: Path,
               title: str) -> Path:
    """Per example: the prompt, then one image per column ``(image key, read key)``; a read that matches the
    example's ``attributes`` is framed green, one that does not, red. Narrow examples sit side by side."""
    from PIL import Image

    plt = _plt()
    c = len(columns)
    per_row = max(1, 6 // (c + 1))  # examples side by side: 3 with one image column, 2 with two, 1 with three
    n = max(1, -(-len(rows) // per_row))
    fig, axes = plt.subplots(n, per_row * (c + 1), figsize=(1.9 * per_row * (c + 1), 1.95 * n), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ex in enumerate(rows):
        cells = axes[i // per_row][(i % per_row) * (c + 1):(i % per_row + 1) * (c + 1)]
        cells[0].text(0, 0.5, "\n".join(textwrap.fill(clean(p), 30) for p in ex.get("prompt", "").split("\n")),
                      fontsize=7, va="center")
        for j, (key, read_key) in enumerate(columns):
            image = ex.get(key)
            if isinstance(image, (str, Path)):
                with Image.open(image) as im:
                    image = im.convert("RGB")
            read = ex.get(read_key) if read_key else None
            ok = None if read_key is None else (read is not None and read == ex.get("attributes"))
            label = key.replace("_", " ") + (f"\nread: {describe(read)}" if read_key else "")
            cells[j + 1].axis("on")
            _show(cells[j + 1], image, label, ok)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def _logmel(wav: Any, sample_rate: int) -> np.ndarray:
    import torch

    x = torch.as_tensor(np.asarray(wav, dtype=np.float32)).reshape(1, -1)
    if x.shape[1] < 400:
        x = torch.nn.functional.pad(x, (0, 400 - x.shape[1]))
    mel = LogMel(MelConfig(sample_rate=sample_rate, n_fft=400, hop_length=160, n_mels=64))
    with torch.no_grad():
        return mel(x)[0].numpy()


def spectrograms(examples: Sequence[Mapping[str, object]], out: Path, columns: Sequence[tuple[str, str | None]],
                 title: str) -> Path:
    """Log-mel spectrograms, one row per example, one column per ``(waveform key, judge-transcript key)``."""
    plt = _plt()
    n, c = max(1, len(examples)), len(columns)
    fig, axes = plt.subplots(n, c, figsize=(3.6 * c, 1.9 * n), squeeze=False)
    for i, ex in enumerate(examples):
        sr = ex["sample_rate"]
        longest = max([len(ex[k]) for k, _ in columns if ex.get(k) is not None] + [1]) / sr
        for j, (key, judge_key) in enumerate(columns):
            ax = axes[i][j]
            wav = ex.get(key)
            if wav is None or len(wav) == 0:
                ax.text(0.5, 0.5, "no speech", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                m = _logmel(wav, sr)
                ax.imshow(m, origin="lower", aspect="auto", cmap="magma",
                          extent=(0, len(wav) / sr, 0, m.shape[0]))
                ax.set_xlim(0, longest)  # one time scale per row: durations compare at a glance
                ax.set_yticks([])
                ax.tick_params(labelsize=6)
            head = key.replace("_", " ") + (f" (row {i + 1}: \"{ex.get('text', '')}\")" if j == 0 else "")
            heard = f"\njudge: {ex.get(judge_key) or '—'}" if judge_key else ""
            ax.set_title(textwrap.fill(clean(head), 60) + clean(heard), fontsize=6.5)
    axes[-1][0].set_xlabel("seconds", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out, dpi=75)


def loss_curves(runs: dict[str, Path], out: Path) -> Path:
    """Training curves of the runs' ``metrics.jsonl`` (one line per run; held-out values as markers)."""
    return plot_metrics({name: read_metrics(p) for name, p in runs.items()}, out,
                        title="training loss (" + ", ".join(runs) + ")")
