"""DNSMOS (Microsoft's non-intrusive speech-quality predictor): an objective stand-in for a listening test's MOS.

The ONNX models ship inside PyPI's ``speechmos`` (the ``mos`` extra, with its undeclared needs ``librosa`` and
``onnxruntime``); nothing is downloaded. DNSMOS reads 16 kHz audio in [-1, 1], so clips are resampled with soxr
and clipped. Scores are on a 1-5 scale: ``ovrl`` (overall), ``sig`` (speech signal), ``bak`` (background) and
``p808`` (the ITU-T P.808 model).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import mean

import numpy as np
import torch

from aromni.errors import InputError
from aromni.utils.extras import optional

DNSMOS_RATE = 16000
#: Our key -> speechmos's key.
SCORES = {"ovrl": "ovrl_mos", "sig": "sig_mos", "bak": "bak_mos", "p808": "p808_mos"}


def dnsmos(wavs: Sequence[np.ndarray | torch.Tensor], sample_rate: int) -> list[dict[str, float]]:
    """One ``{"ovrl", "sig", "bak", "p808"}`` dict per mono waveform ``[T]`` at ``sample_rate``.

    Raises:
        InputError: an empty clip (DNSMOS has nothing to score).
        MissingExtraError: ``speechmos`` (or librosa / onnxruntime) is not installed.
    """
    soxr = optional("soxr", extra="audio", feature="resampling for DNSMOS")
    optional("librosa", extra="mos", feature="DNSMOS")
    optional("onnxruntime", extra="mos", feature="DNSMOS")
    model = optional("speechmos.dnsmos", extra="mos", feature="DNSMOS")
    out = []
    for i, w in enumerate(wavs):
        a = np.asarray(w.detach().cpu() if isinstance(w, torch.Tensor) else w, dtype=np.float64).reshape(-1)
        if a.size == 0:
            raise InputError(f"clip {i} is empty", "DNSMOS scores clips with at least one sample")
        if sample_rate != DNSMOS_RATE:
            a = soxr.resample(a, sample_rate, DNSMOS_RATE)
        scores = model.run(np.clip(a, -1.0, 1.0).astype(np.float32), DNSMOS_RATE)
        out.append({ours: float(scores[theirs]) for ours, theirs in SCORES.items()})
    return out


def mean_scores(scores: Sequence[dict[str, float]]) -> dict[str, float | None]:
    """The mean of each score over clips (``None`` for no clips)."""
    return {k: (round(mean(s[k] for s in scores), 3) if scores else None) for k in SCORES}
