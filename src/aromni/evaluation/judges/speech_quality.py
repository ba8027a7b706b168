"""DNSMOS speech quality of generated speech (the non-intrusive MOS stand-in of the speech benchmarks).

A thin front for :func:`aromni.toyworld.judges.dnsmos.dnsmos` (Microsoft's DNSMOS ONNX models as PyPI's
``speechmos`` ships them, the ``mos`` extra; nothing downloaded): clips are resampled to 16 kHz and clipped to
[-1, 1], and each gets ``{"ovrl", "sig", "bak", "p808"}`` on a MOS-like 1-5 scale (the models' calibration polynomials
can go slightly below 1 for non-speech: a pure tone scored ovrl 0.96). Per-clip dicts are what shards store;
:func:`mean_scores` averages them over all shards' clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata

import numpy as np
import torch

from aromni.errors import InputError
from aromni.toyworld.judges.dnsmos import SCORES, dnsmos
from aromni.toyworld.judges.dnsmos import mean_scores as _mean_scores
from aromni.utils.io import JSONValue


def dnsmos_scores(wavs: Sequence[np.ndarray | torch.Tensor], sample_rate: int) -> list[dict[str, float]]:
    """One ``{"ovrl", "sig", "bak", "p808"}`` dict per mono waveform ``[T]`` (float in [-1, 1]) at ``sample_rate``.

    Raises:
        InputError: a non-positive sample rate or an empty clip.
        MissingExtraError: speechmos / librosa / onnxruntime are not installed (the ``mos`` extra).
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise InputError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    return dnsmos(wavs, sample_rate)


def mean_scores(scores: Sequence[dict[str, float]]) -> dict[str, float | None]:
    """The mean of each DNSMOS score over clips, rounded to 3 decimals (``None`` for no clips)."""
    return _mean_scores(scores)


def describe() -> dict[str, JSONValue]:
    """What the report records about the DNSMOS judge (the speechmos version holds the ONNX models)."""
    try:
        version = metadata.version("speechmos")
    except metadata.PackageNotFoundError:
        version = None
    return {"judge": "dnsmos", "package": "speechmos", "version": version, "scores": sorted(SCORES),
            "sample_rate": 16000}
