"""Log-mel spectrograms in torch, shared by the codec losses, judges and benchmarks.

The mel filterbank is computed here (Slaney or HTK mel scale, optional Slaney area normalisation), matching the
conventions of librosa / torchaudio so numbers are comparable with published recipes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aromni.errors import ConfigError

_SLANEY_F_SP = 200.0 / 3  # Hz per mel below the break frequency
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP  # 15 mel
_SLANEY_LOGSTEP = math.log(6.4) / 27.0  # 27 mel per factor 6.4 above 1 kHz


def hz_to_mel(hz: torch.Tensor, scale: str = "slaney") -> torch.Tensor:
    """Frequency (Hz) -> mel, on the ``"slaney"`` (linear below 1 kHz, log above) or ``"htk"`` scale."""
    hz = torch.as_tensor(hz, dtype=torch.float64)
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + hz / 700.0)
    lin = hz / _SLANEY_F_SP
    log = _SLANEY_MIN_LOG_MEL + torch.log(hz.clamp(min=_SLANEY_MIN_LOG_HZ) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    return torch.where(hz >= _SLANEY_MIN_LOG_HZ, log, lin)


def mel_to_hz(mel: torch.Tensor, scale: str = "slaney") -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    mel = torch.as_tensor(mel, dtype=torch.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    lin = mel * _SLANEY_F_SP
    log = _SLANEY_MIN_LOG_HZ * torch.exp(_SLANEY_LOGSTEP * (mel - _SLANEY_MIN_LOG_MEL))
    return torch.where(mel >= _SLANEY_MIN_LOG_MEL, log, lin)


def mel_filterbank(
    n_freqs: int,
    n_mels: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    *,
    scale: str = "slaney",
    norm: str | None = "slaney",
) -> torch.Tensor:
    """Triangular mel filters ``[n_freqs, n_mels]`` (float32) for a one-sided spectrum of ``n_freqs`` bins.

    Filter ``m`` rises linearly (in Hz) from mel point ``m`` to ``m + 1`` and falls to ``m + 2``, the
    ``n_mels + 2`` points being equally spaced on the mel scale between ``f_min`` and ``f_max``. ``norm="slaney"``
    divides each filter by half its bandwidth in Hz so every filter has about unit area.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if scale not in ("slaney", "htk") or norm not in (None, "slaney"):
        raise ConfigError(f"unknown mel scale/norm {scale!r}/{norm!r}", "scale: slaney|htk, norm: slaney|None")
    fft_hz = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)  # [n_freqs]
    lo, hi = hz_to_mel(torch.tensor(f_min), scale), hz_to_mel(torch.tensor(f_max), scale)
    pts = mel_to_hz(torch.linspace(float(lo), float(hi), n_mels + 2, dtype=torch.float64), scale)  # [n_mels+2]
    widths = pts[1:] - pts[:-1]  # [n_mels+1]
    slopes = pts[None, :] - fft_hz[:, None]  # [n_freqs, n_mels+2]: pts - f
    rising = -slopes[:, :-2] / widths[:-1]  # (f - left) / (center - left)
    falling = slopes[:, 2:] / widths[1:]  # (right - f) / (right - center)
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)
    if norm == "slaney":
        fb = fb * (2.0 / (pts[2:] - pts[:-2]))[None, :]
    return fb.float()


@dataclass(frozen=True)
class MelConfig:
    """Settings of a log-mel spectrogram. Defaults: 80 bins, 64 ms window, 16 ms hop at 16 kHz."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int | None = None  # None: n_fft
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    scale: str = "slaney"  # "slaney" | "htk"
    norm: str | None = "slaney"  # "slaney" | None
    power: float = 1.0  # 1: magnitude, 2: power
    center: bool = True  # pad n_fft // 2 zeros on both sides (frames = T // hop + 1)
    log_floor: float = 1e-5

    def __post_init__(self) -> None:
        win = self.n_fft if self.win_length is None else self.win_length
        if self.n_fft <= 0 or self.hop_length <= 0 or not 0 < win <= self.n_fft or self.n_mels <= 0:
            raise ConfigError(f"invalid mel settings {self}", "n_fft, hop_length, n_mels > 0 and win <= n_fft")
        if self.power <= 0 or self.log_floor <= 0:
            raise ConfigError("mel power and log_floor must be positive")


class LogMel(torch.nn.Module):
    """``wav [B, T] -> log(max(mel, floor)) [B, n_mels, frames]`` (natural log)."""

    def __init__(self, cfg: MelConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or MelConfig(**overrides)
        self.cfg = cfg
        win = cfg.n_fft if cfg.win_length is None else cfg.win_length
        self.register_buffer("window", torch.hann_window(win, periodic=True), persistent=False)
        fb = mel_filterbank(cfg.n_fft // 2 + 1, cfg.n_mels, cfg.sample_rate, cfg.f_min, cfg.f_max,
                            scale=cfg.scale, norm=cfg.norm)
        self.register_buffer("fb", fb, persistent=False)

    def magnitudes(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T] -> |STFT|^power [B, n_fft//2+1, frames]``."""
        c = self.cfg
        if not c.center and wav.shape[-1] < c.n_fft:
            wav = F.pad(wav, (0, c.n_fft - wav.shape[-1]))
        spec = torch.stft(wav.float(), c.n_fft, c.hop_length, self.window.shape[0], self.window,
                          center=c.center, pad_mode="constant", return_complex=True)
        mag = spec.abs()
        return mag if c.power == 1.0 else mag.pow(c.power)

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T] -> mel [B, n_mels, frames]`` (linear amplitude)."""
        return torch.einsum("bft,fm->bmt", self.magnitudes(wav), self.fb)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(wav).clamp(min=self.cfg.log_floor))


def mel_l1(a: torch.Tensor, b: torch.Tensor, mel: LogMel | None = None) -> torch.Tensor:
    """Mean absolute difference of log-mels of two waveforms ``[B, T]`` (trimmed to the shorter length).

    The default is the codec's held-out metric: 80 Slaney bins, n_fft 1024, hop 256, natural log, floor 1e-5.
    """
    mel = mel or LogMel(MelConfig())
    n = min(a.shape[-1], b.shape[-1])
    return (mel.to(a.device)(a[..., :n]) - mel.to(b.device)(b[..., :n])).abs().mean()
