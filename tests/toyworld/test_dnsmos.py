"""DNSMOS through speechmos's shipped ONNX models: real speech (resampled from espeak-ng's rate) scores well above
white noise, and an empty clip is a clear error. (The scores come from the library's model; this checks that our wrapper
feeds it what it expects: 16 kHz, [-1, 1], one dict per clip.)"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from aromni.errors import InputError

pytest.importorskip("speechmos")
pytest.importorskip("librosa")
pytest.importorskip("onnxruntime")

from aromni.toyworld.judges.dnsmos import dnsmos, mean_scores  # noqa: E402


def _speech(tmp_path) -> tuple[np.ndarray, int]:
    import subprocess

    import soundfile as sf

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    wav = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "the green star is small and the red circle is big"], check=True)
    a, sr = sf.read(str(wav), dtype="float32")
    return a, sr


def test_speech_scores_above_noise_and_rates_are_resampled(tmp_path):
    speech, sr = _speech(tmp_path)  # espeak-ng writes 22.05 kHz: the wrapper resamples to 16 kHz
    noise = np.random.default_rng(0).normal(0, 0.3, sr * 3).astype(np.float32)
    s, n = dnsmos([speech, noise], sr)
    assert set(s) == {"ovrl", "sig", "bak", "p808"} and all(1.0 <= v <= 5.0 for v in s.values())
    assert s["ovrl"] > n["ovrl"] + 0.5 and s["bak"] > n["bak"] + 0.5
    means = mean_scores([s, n])
    assert means["ovrl"] == pytest.approx((s["ovrl"] + n["ovrl"]) / 2, abs=1e-3)
    assert mean_scores([])["ovrl"] is None


def test_an_empty_clip_is_a_clear_error():
    with pytest.raises(InputError, match="clip 0 is empty"):
        dnsmos([np.zeros(0)], 16000)
