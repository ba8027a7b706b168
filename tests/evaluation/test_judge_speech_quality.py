"""dnsmos_scores is the toy world's DNSMOS wrapper (not a copy): it delegates, returns one dict per clip at any
rate, and averages."""

from __future__ import annotations

import numpy as np
import pytest

from aromni.errors import InputError
from aromni.evaluation.judges import dnsmos_scores, mean_scores, speech_quality


def test_delegates_to_the_shared_dnsmos(monkeypatch):
    calls = []

    def fake(wavs, rate):
        calls.append((len(wavs), rate))
        return [{"ovrl": 3.0, "sig": 3.5, "bak": 4.0, "p808": 3.25}, {"ovrl": 2.0, "sig": 2.5, "bak": 3.0,
                                                                       "p808": 2.25}]

    monkeypatch.setattr(speech_quality, "dnsmos", fake)
    scores = dnsmos_scores([np.zeros(10), np.zeros(20)], 24000)
    assert calls == [(2, 24000)]
    assert mean_scores(scores) == {"ovrl": 2.5, "sig": 3.0, "bak": 3.5, "p808": 2.75}
    assert mean_scores([]) == {"ovrl": None, "sig": None, "bak": None, "p808": None}


def test_real_dnsmos_scores_one_clip_per_dict():
    pytest.importorskip("speechmos")
    pytest.importorskip("librosa")
    pytest.importorskip("onnxruntime")
    t = np.arange(24000) / 24000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    (scores,) = dnsmos_scores([tone], 24000)
    # a pure tone is poor speech: DNSMOS's calibration polynomials can put it slightly below 1
    assert set(scores) == {"ovrl", "sig", "bak", "p808"} and all(0.0 < v <= 5.0 for v in scores.values())
    assert speech_quality.describe()["version"]


def test_bad_inputs():
    with pytest.raises(InputError, match="positive integer"):
        dnsmos_scores([np.zeros(100, np.float32)], 0)
    with pytest.raises(InputError, match="clip 0 is empty"):
        dnsmos_scores([np.zeros(0, np.float32)], 16000)
