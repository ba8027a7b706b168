"""ISTFT head: backbone frames -> complex spectra -> windowed inverse FFT -> overlap-add, streamable.

Each code frame yields ``subframes`` spectra (log-magnitude and phase, as in Vocos' ISTFTHead); spectrum ``j``
is windowed and added at samples ``[j*hop_s, j*hop_s + n_fft)``. Windows start at their sub-frame, so after
frame ``t`` every sample before ``(t+1)*hop`` is final: later spectra only reach forward. The part of the
overlap-add that reaches into the next frames (``n_fft - hop_s`` samples) is the streaming state.

Normalisation is by the constant steady-state window envelope ``sum_k w(n - k*hop_s)^2`` rather than the exact
per-sample envelope, so a sample's value never depends on where the stream started (the first ``n_fft - hop_s``
samples simply fade in).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aromni.errors import ConfigError
from aromni.tokenizers.streaming import StreamingModule


@dataclass
class OverlapAddState:
    tail: torch.Tensor  # [B, n_fft - hop_s]: contributions already made to samples not yet emitted


class StreamingISTFTHead(StreamingModule[OverlapAddState]):
    """``h [B, dim, T] -> audio [B, T * subframes * hop_s]``, streamable.

    Not WavTokenizer's :class:`~aromni.tokenizers.speech.wavtokenizer.head.ISTFTHead`: that one centres its
    windows ("same" padding) and divides by the exact per-sample envelope, so its first samples depend on later
    frames; this one starts windows at their sub-frame and normalises by the constant steady-state envelope.
    """

    def __init__(self, dim: int, n_fft: int, hop_s: int, subframes: int, max_log_magnitude: float):
        super().__init__()
        self.n_fft, self.hop_s, self.subframes = n_fft, hop_s, subframes
        self.max_log_magnitude = max_log_magnitude
        self.out = nn.Linear(dim, subframes * (n_fft + 2))
        window = torch.hann_window(n_fft, periodic=True)
        self.register_buffer("window", window, persistent=False)
        self.scale = 1.0 / _steady_envelope(window, hop_s)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> OverlapAddState:
        return OverlapAddState(torch.zeros(batch_size, self.n_fft - self.hop_s, device=device, dtype=dtype))

    def spectra(self, h: torch.Tensor) -> torch.Tensor:
        """``[B, dim, T] -> complex spectra [B, T * subframes, n_fft/2 + 1]``."""
        b, _, t = h.shape
        x = self.out(h.transpose(1, 2)).reshape(b, t * self.subframes, self.n_fft + 2)
        log_mag, phase = x.float().chunk(2, dim=-1)
        return torch.polar(torch.exp(log_mag.clamp(max=self.max_log_magnitude)), phase)

    def synthesize(self, spec: torch.Tensor) -> torch.Tensor:
        """Spectra ``[B, N, n_fft/2 + 1]`` -> audio ``[B, N * hop_s]``: final samples only; the overlap-add tail
        is carried in the streaming state (offline: dropped, as no spectra follow)."""
        b, n = spec.shape[0], spec.shape[1]
        state: OverlapAddState | None = self._streaming_state
        tail_len = self.n_fft - self.hop_s
        tail = state.tail if state is not None else spec.new_zeros(b, tail_len, dtype=torch.float32)
        if n == 0:
            return spec.new_zeros(b, 0, dtype=torch.float32)
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=-1) * (self.window * self.scale)  # [B, N, n_fft]
        length = (n - 1) * self.hop_s + self.n_fft
        audio = F.fold(frames.transpose(1, 2), output_size=(1, length), kernel_size=(1, self.n_fft),
                       stride=(1, self.hop_s)).reshape(b, length)
        audio = torch.cat([audio[:, :tail_len] + tail, audio[:, tail_len:]], dim=1)
        emit = n * self.hop_s
        if state is not None:
            state.tail = audio[:, emit:]
        return audio[:, :emit]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.synthesize(self.spectra(h))


def _steady_envelope(window: torch.Tensor, hop: int) -> float:
    """``sum_k w(n - k*hop)^2``, checked to be constant in n (else normalising by a constant would be wrong)."""
    n = window.shape[0]
    env = (window.double() ** 2).reshape(n // hop, hop).sum(0)
    if float(env.max() - env.min()) > 1e-6 * float(env.max()):
        raise ConfigError(f"Hann window of {n} with hop {hop} has no constant overlap-add envelope",
                          "use n_fft = k * hop with k >= 3, e.g. n_fft = 4 * hop")
    return float(env.mean())
