"""Audio I/O: any rate/channels in -> mono at the requested rate via soxr; atomic 16-bit writes; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from aromni.errors import InputError
from aromni.tokenizers.speech.audio_io import load_audio, save_wav


def _sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def test_stereo_44k_to_mono_16k_matches_soxr_and_keeps_frequency(tmp_path):
    left, right = _sine(440.0, 44100, 1.5), _sine(1000.0, 44100, 1.5, amp=0.2)
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([left, right], 1), 44100, subtype="FLOAT")
    wav = load_audio(path, 16000)
    assert wav.dtype == torch.float32 and wav.dim() == 1
    assert wav.shape[0] == round(1.5 * 16000)
    expected = soxr.resample((left + right) / 2, 44100, 16000, quality="HQ")
    assert np.allclose(wav.numpy(), expected, atol=1e-6)
    # content: both tones survive at their frequencies (the mix halves each)
    spec = np.abs(np.fft.rfft(wav.numpy()))
    bins = np.fft.rfftfreq(wav.shape[0], 1 / 16000)
    top2 = sorted(bins[np.argsort(spec)[-2:]])
    assert abs(top2[0] - 440) < 2 and abs(top2[1] - 1000) < 2


def test_same_rate_mono_is_passed_through(tmp_path):
    x = _sine(300.0, 16000, 0.5)
    sf.write(tmp_path / "m.wav", x, 16000, subtype="FLOAT")
    assert np.array_equal(load_audio(tmp_path / "m.wav", 16000).numpy(), x)


def test_int16_8k_flac_upsampled(tmp_path):
    x = _sine(500.0, 8000, 1.0)
    sf.write(tmp_path / "a.flac", (x * 32767).astype(np.int16), 8000)
    wav = load_audio(tmp_path / "a.flac", 16000)
    assert wav.shape[0] == 16000 and abs(_peak_hz(wav.numpy(), 16000) - 500) < 2


def test_save_wav_int16_roundtrip_atomic_and_normalize(tmp_path):
    x = _sine(220.0, 16000, 0.3, amp=0.25)
    p = save_wav(tmp_path / "o.wav", torch.from_numpy(x), 16000)
    info = sf.info(p)
    assert info.subtype == "PCM_16" and info.samplerate == 16000 and info.channels == 1
    back, _ = sf.read(p, dtype="float32")
    assert np.abs(back - x).max() <= 1 / 32767 + 1e-7
    assert [f.name for f in tmp_path.iterdir()] == ["o.wav"]  # no temp files left
    save_wav(tmp_path / "n.wav", x[None], 16000, normalize=True, peak=0.9)
    assert abs(np.abs(sf.read(tmp_path / "n.wav")[0]).max() - 0.9) < 1e-3
    save_wav(tmp_path / "clip.wav", x * 10, 16000)  # clipped, not wrapped around
    assert np.abs(sf.read(tmp_path / "clip.wav")[0]).max() <= 1.0
    with pytest.raises(InputError):
        save_wav(tmp_path / "s.wav", np.zeros((2, 10)), 16000)
    with pytest.raises(InputError):
        save_wav(tmp_path / "nan.wav", np.array([0.0, np.nan]), 16000)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such audio file"):
        load_audio(tmp_path / "nope.wav", 16000)


def test_non_audio_file(tmp_path):
    p = tmp_path / "text.wav"
    p.write_text("this is not audio\n" * 10)
    with pytest.raises(InputError, match="not a readable audio file") as e:
        load_audio(p, 16000)
    assert str(p) in str(e.value)


def test_empty_file_and_zero_length_audio(tmp_path):
    (tmp_path / "zero.wav").write_bytes(b"")
    with pytest.raises(InputError, match="zero.wav"):
        load_audio(tmp_path / "zero.wav", 16000)
    sf.write(tmp_path / "nosamples.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(InputError, match="empty"):
        load_audio(tmp_path / "nosamples.wav", 16000)


def test_truncated_file(tmp_path):
    p = tmp_path / "t.wav"
    sf.write(p, _sine(440.0, 16000, 1.0), 16000, subtype="PCM_16")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])  # header still promises 16000 samples
    with pytest.raises(InputError, match="truncated") as e:
        load_audio(p, 16000)
    assert "t.wav" in str(e.value)


def test_too_long_names_the_limit(tmp_path):
    p = tmp_path / "long.wav"
    sf.write(p, np.zeros(16000 * 3, dtype=np.float32), 16000)
    with pytest.raises(InputError, match=r"3\.0 s long, over the 2 s limit"):
        load_audio(p, 16000, max_seconds=2)
    assert load_audio(p, 16000, max_seconds=None).shape[0] == 48000
