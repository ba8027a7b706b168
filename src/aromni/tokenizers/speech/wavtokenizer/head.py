"""ISTFT head of WavTokenizer: ``hidden [B, L, dim] -> waveform [B, L * hop]`` ("same" padding)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Upper clip of the predicted magnitude (exp of the log-magnitude), as in the official head.
MAX_MAGNITUDE = 1e2


def istft_same(spec: torch.Tensor, window: torch.Tensor, hop: int) -> torch.Tensor:
    """Inverse STFT with "same" padding: ``spec [B, n_fft/2+1, L]`` (complex) -> ``[B, L * hop]``.

    Each frame is ``irfft`` -ed and windowed, frames are overlap-added ``hop`` apart, ``(n_fft - hop) / 2``
    samples are trimmed from both ends, and the result is divided by the overlap-added squared window.
    """
    n_fft = window.shape[0]
    pad = (n_fft - hop) // 2
    b, _, frames = spec.shape
    frames_t = torch.fft.irfft(spec, n_fft, dim=1, norm="backward") * window[None, :, None]  # [B, n_fft, L]
    full = (frames - 1) * hop + n_fft
    y = F.fold(frames_t, output_size=(1, full), kernel_size=(1, n_fft), stride=(1, hop))[:, 0, 0, pad:-pad]
    env = window.square()[None, :, None].expand(1, n_fft, frames)
    env = F.fold(env, output_size=(1, full), kernel_size=(1, n_fft), stride=(1, hop))[0, 0, 0, pad:-pad]
    return y / env


class ISTFTHead(nn.Module):
    """Vocos' ISTFT head with "same" padding (offline; the streamable variant of our codec is
    :class:`~aromni.tokenizers.speech.codec.head.StreamingISTFTHead`)."""

    def __init__(self, dim: int, n_fft: int, hop_length: int):
        super().__init__()
        self.hop_length = hop_length
        self.out = nn.Linear(dim, n_fft + 2)
        # Persistent because the official checkpoint stores it (``head.istft.window``): periodic Hann.
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, L, dim] -> waveform [B, L * hop]``."""
        log_mag, phase = self.out(x).transpose(1, 2).chunk(2, dim=1)  # each [B, n_fft/2+1, L]
        mag = torch.exp(log_mag).clip(max=MAX_MAGNITUDE)
        return istft_same(torch.polar(mag, phase), self.window, self.hop_length)
