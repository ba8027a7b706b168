"""Log-mel: mel scales at known points, filterbank against an independent construction, spectrogram against a
direct numpy DFT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aromni.errors import ConfigError
from aromni.tokenizers.speech.mel import LogMel, MelConfig, hz_to_mel, mel_filterbank, mel_l1, mel_to_hz


def test_mel_scales_at_known_points():
    # Slaney: linear 200/3 Hz per mel below 1 kHz (1 kHz = 15 mel), 27 mel per factor 6.4 above
    got = hz_to_mel(torch.tensor([0.0, 500.0, 1000.0, 6400.0]), "slaney")
    assert torch.allclose(got, torch.tensor([0.0, 7.5, 15.0, 42.0], dtype=torch.float64))
    # HTK: 2595 log10(1 + f / 700)
    assert float(hz_to_mel(torch.tensor(700.0), "htk")) == pytest.approx(2595 * np.log10(2))
    f = torch.tensor([30.0, 999.0, 1000.0, 4321.0, 8000.0], dtype=torch.float64)
    for scale in ("slaney", "htk"):
        assert torch.allclose(mel_to_hz(hz_to_mel(f, scale), scale), f)


def _reference_filterbank(n_fft, n_mels, sr, scale, norm):
    """Straightforward per-filter loops (independent of the vectorised code under test)."""
    def to_mel(h):
        if scale == "htk":
            return 2595 * np.log10(1 + h / 700)
        return h / (200 / 3) if h < 1000 else 15 + np.log(h / 1000) / (np.log(6.4) / 27)

    def to_hz(m):
        if scale == "htk":
            return 700 * (10 ** (m / 2595) - 1)
        return m * 200 / 3 if m < 15 else 1000 * np.exp((np.log(6.4) / 27) * (m - 15))

    pts = [to_hz(m) for m in np.linspace(to_mel(0.0), to_mel(sr / 2), n_mels + 2)]
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((len(freqs), n_mels))
    for m in range(n_mels):
        lo, c, hi = pts[m], pts[m + 1], pts[m + 2]
        for i, f in enumerate(freqs):
            if lo < f <= c:
                fb[i, m] = (f - lo) / (c - lo)
            elif c < f < hi:
                fb[i, m] = (hi - f) / (hi - c)
        if norm == "slaney":
            fb[:, m] *= 2 / (hi - lo)
    return fb


@pytest.mark.parametrize("scale,norm", [("slaney", "slaney"), ("htk", None), ("slaney", None)])
def test_filterbank_matches_reference(scale, norm):
    fb = mel_filterbank(257, 40, 16000, scale=scale, norm=norm)
    ref = _reference_filterbank(512, 40, 16000, scale, norm)
    assert fb.shape == (257, 40)
    assert np.allclose(fb.numpy(), ref, atol=1e-6 * ref.max())


def test_slaney_filters_have_unit_area_in_hz():
    fb = mel_filterbank(4097, 40, 16000)  # fine frequency grid
    df = 8000 / 4096
    area = fb.sum(0) * df
    assert torch.allclose(area[2:-1], torch.ones(37), atol=0.02)


def test_logmel_matches_direct_dft():
    cfg = MelConfig(sample_rate=16000, n_fft=512, hop_length=128, n_mels=40, center=True)
    x = torch.randn(2, 3000, generator=torch.Generator().manual_seed(0))
    got = LogMel(cfg)(x)
    # direct: zero-pad n_fft/2 both sides, periodic Hann, explicit DFT matrix, |.|, filterbank, log(max(., 1e-5))
    xp = np.pad(x.numpy().astype(np.float64), ((0, 0), (256, 256)))
    n_frames = 1 + (xp.shape[1] - 512) // 128
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)
    frames = np.stack([xp[:, i * 128:i * 128 + 512] * win for i in range(n_frames)], axis=1)  # [B, N, 512]
    k = np.arange(257)[:, None] * np.arange(512)[None, :]
    dft = np.exp(-2j * np.pi * k / 512)  # [257, 512]
    mag = np.abs(frames @ dft.T)  # [B, N, 257]
    fb = _reference_filterbank(512, 40, 16000, "slaney", "slaney")
    ref = np.log(np.maximum(mag @ fb, 1e-5)).transpose(0, 2, 1)  # [B, 40, N]
    assert got.shape == ref.shape
    assert np.allclose(got.numpy(), ref, atol=1e-3)


def test_sine_lands_in_the_right_band_and_power_option():
    sr, f = 16000, 1000.0
    x = torch.sin(2 * torch.pi * f * torch.arange(sr) / sr)[None]
    m = LogMel(MelConfig(n_fft=1024, hop_length=256, n_mels=80))
    band = int(m(x)[0, :, 10:-10].mean(-1).argmax())
    centers = mel_to_hz(torch.linspace(0, float(hz_to_mel(torch.tensor(8000.0))), 82))[1:-1]
    assert abs(float(centers[band]) - f) < 60
    p2 = LogMel(MelConfig(n_fft=1024, hop_length=256, n_mels=80, power=2.0)).magnitudes(x)
    assert torch.allclose(p2, m.magnitudes(x) ** 2, rtol=1e-4)


def test_mel_l1_and_config_validation():
    x = torch.randn(1, 8000)
    assert float(mel_l1(x, x)) == 0.0
    assert float(mel_l1(x, 0.5 * x)) == pytest.approx(np.log(2), rel=1e-3)  # log-mel shifts by log 2
    for bad in ({"n_fft": 0}, {"win_length": 2048}, {"power": 0.0}, {"n_mels": 0}):
        with pytest.raises(ConfigError):
            MelConfig(**bad)
    with pytest.raises(ConfigError):
        mel_filterbank(257, 40, 16000, scale="bark")
