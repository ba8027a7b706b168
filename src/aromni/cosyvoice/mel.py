"""The two mel front ends of CosyVoice2's speech stack.

- :func:`whisper_log_mel`: the tokenizer's input, Whisper's recipe with 128 bins at 16 kHz (100 frames/s):
  n_fft 400, hop 160, Hann window, ``|STFT|^2`` with the last frame dropped, Slaney mel filters,
  ``log10(max(x, 1e-10))``, floored at ``max - 8``, then ``(x + 4) / 4``.
- :class:`MatchaMel` / :func:`matcha_mel`: the flow model's target and the vocoder's input, Matcha-TTS's recipe
  at 24 kHz: 80 Slaney bins from 0 to 8 kHz, n_fft = win = 1920, hop 480 (50 frames/s), reflect padding of
  ``(n_fft - hop) / 2`` on each side with ``center=False`` so ``T`` samples give exactly ``T // 480`` frames,
  magnitude ``sqrt(re^2 + im^2 + 1e-9)``, natural ``log(max(x, 1e-5))``.

Both reuse :func:`aromni.tokenizers.speech.mel.mel_filterbank` (librosa's Slaney filters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aromni.errors import InputError
from aromni.tokenizers.speech.mel import mel_filterbank

__all__ = ["MATCHA_24K", "MatchaMel", "MatchaMelConfig", "WHISPER_HOP", "WHISPER_SAMPLE_RATE", "matcha_mel",
           "whisper_log_mel"]

WHISPER_SAMPLE_RATE = 16000
WHISPER_HOP = 160
_WHISPER_N_FFT = 400
_whisper_cache: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def whisper_log_mel(wav: torch.Tensor, n_mels: int = 128) -> torch.Tensor:
    """Whisper's normalised log-mel: ``wav [B, T]`` (16 kHz, float) -> ``[B, n_mels, T // 160]``."""
    if wav.dim() != 2:
        raise InputError(f"whisper_log_mel expects a [B, T] waveform, got shape {tuple(wav.shape)}")
    key = (n_mels, str(wav.device))
    if key not in _whisper_cache:
        fb = mel_filterbank(_WHISPER_N_FFT // 2 + 1, n_mels, WHISPER_SAMPLE_RATE, 0.0, WHISPER_SAMPLE_RATE / 2)
        _whisper_cache[key] = (torch.hann_window(_WHISPER_N_FFT, device=wav.device), fb.to(wav.device))
    window, fb = _whisper_cache[key]
    spec = torch.stft(wav.float(), _WHISPER_N_FFT, WHISPER_HOP, window=window, return_complex=True)
    power = spec[..., :-1].abs() ** 2  # [B, 201, frames]; Whisper drops the last frame
    log = torch.einsum("bft,fm->bmt", power, fb).clamp(min=1e-10).log10()
    log = torch.maximum(log, log.amax(dim=(-2, -1), keepdim=True) - 8.0)
    return (log + 4.0) / 4.0


@dataclass(frozen=True)
class MatchaMelConfig:
    """Matcha-TTS mel settings; the defaults are CosyVoice2's ``feat_extractor`` (24 kHz, 50 frames/s)."""

    sample_rate: int = 24000
    n_fft: int = 1920
    hop_length: int = 480
    win_length: int = 1920
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = 8000.0  # None: Nyquist (the GAN-loss mel of CosyVoice2's HiFT recipe)


MATCHA_24K = MatchaMelConfig()


class MatchaMel(torch.nn.Module):
    """``wav [B, T] -> log-mel [B, n_mels, T // hop]`` (Matcha-TTS's ``mel_spectrogram``)."""

    def __init__(self, cfg: MatchaMelConfig = MATCHA_24K):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)
        fb = mel_filterbank(cfg.n_fft // 2 + 1, cfg.n_mels, cfg.sample_rate, cfg.f_min, cfg.f_max)
        self.register_buffer("fb", fb, persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        if wav.dim() != 2:
            raise InputError(f"MatchaMel expects a [B, T] waveform, got shape {tuple(wav.shape)}")
        pad = (c.n_fft - c.hop_length) // 2
        if wav.shape[-1] <= pad:
            raise InputError(f"audio of {wav.shape[-1]} samples is too short for a mel frame",
                             f"pass at least {c.hop_length} samples at {c.sample_rate} Hz")
        x = F.pad(wav.float().unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(x, c.n_fft, c.hop_length, c.win_length, self.window, center=False, return_complex=True)
        mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        return torch.einsum("bft,fm->bmt", mag, self.fb).clamp(min=1e-5).log()


_matcha_cache: dict[tuple[MatchaMelConfig, str], MatchaMel] = {}


def matcha_mel(wav: torch.Tensor, cfg: MatchaMelConfig = MATCHA_24K) -> torch.Tensor:
    """Functional :class:`MatchaMel` (the module is built once per config and device)."""
    key = (cfg, str(wav.device))
    if key not in _matcha_cache:
        _matcha_cache[key] = MatchaMel(cfg).to(wav.device)
    return _matcha_cache[key](wav)
