"""HiFT's neural-source-filter excitation (CosyVoice's ``SineGen`` / ``SineGen2`` / ``SourceModuleHnNSF``).

From a sample-rate F0 track ``f0 [B, T, 1]`` (the frame F0 repeated ``hop`` times), the sine generator makes the
fundamental and ``harmonic_num`` overtones, ``sine_amp * sin(phase_k)`` with ``phase_k = 2 pi k sum f0 / sr``,
zeroed where ``f0 <= voiced_threshold``, plus Gaussian noise (std ``noise_std`` where voiced, ``sine_amp / 3``
where unvoiced). ``SourceModuleHnNSF`` merges the ``harmonic_num + 1`` channels with ``tanh(Linear(H+1 -> 1))``.

``SineGen2`` (used at 24 kHz, see :attr:`HiFTConfig.sine_generator`) accumulates the phase at the frame rate: the
per-sample phase increments are linearly resampled down by ``upsample_scale`` (480), summed, scaled back by 480
and linearly resampled up. It also adds a random initial phase to the overtones at sample 0, but the ``1/480``
linear resampling (``align_corners=False``) reads samples ``480 j + 239`` and ``480 j + 240`` only, so that
offset never reaches the output: the only randomness left is the noise. We keep the computation as it is.

The sine generators have no weights; the only parameters are ``l_linear.{weight,bias}``. Every random draw takes
an optional ``torch.Generator`` so inference can be made deterministic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SineGen", "SineGen2", "SourceModuleHnNSF"]


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def _rand(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)


class _SineBase(nn.Module):
    def __init__(self, samp_rate: int, harmonic_num: int, sine_amp: float, noise_std: float,
                 voiced_threshold: float):
        super().__init__()
        self.sampling_rate, self.harmonic_num = samp_rate, harmonic_num
        self.sine_amp, self.noise_std, self.voiced_threshold = sine_amp, noise_std, voiced_threshold

    def _mix(self, sines: torch.Tensor, f0: torch.Tensor,
             generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero unvoiced samples of ``sines [B, T, H+1]`` (already times ``sine_amp``) and add the noise."""
        uv = (f0 > self.voiced_threshold).to(sines.dtype)  # [B, T, 1]
        noise_amp = uv * self.noise_std + (1 - uv) * self.sine_amp / 3
        return sines * uv + noise_amp * _randn(sines, generator), uv


class SineGen(_SineBase):
    """The original NSF sine generator (CosyVoice's choice at 22.05 kHz): phase summed per sample,
    a uniform random phase in [-pi, pi) for each overtone (none for the fundamental)."""

    @torch.no_grad()
    def forward(self, f0: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``f0 [B, T, 1]`` -> ``(sines [B, T, H+1], uv [B, T, 1])``."""
        k = torch.arange(1, self.harmonic_num + 2, device=f0.device, dtype=f0.dtype)
        theta = 2 * math.pi * (torch.cumsum(f0 * k / self.sampling_rate, dim=1) % 1)  # [B, T, H+1]
        phase = (_rand((f0.shape[0], 1, self.harmonic_num + 1), f0, generator) * 2 - 1) * math.pi
        phase[:, :, 0] = 0
        return self._mix(self.sine_amp * torch.sin(theta + phase), f0, generator)


class SineGen2(_SineBase):
    """CosyVoice's ``SineGen2`` (non-causal path): the phase is accumulated at the frame rate (module docstring)."""

    def __init__(self, samp_rate: int, upsample_scale: int, harmonic_num: int, sine_amp: float, noise_std: float,
                 voiced_threshold: float):
        super().__init__(samp_rate, harmonic_num, sine_amp, noise_std, voiced_threshold)
        self.upsample_scale = upsample_scale

    @torch.no_grad()
    def forward(self, f0: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``f0 [B, T, 1]`` (``T`` a multiple of ``upsample_scale``) -> ``(sines [B, T, H+1], uv [B, T, 1])``."""
        b, t, _ = f0.shape
        k = torch.arange(1, self.harmonic_num + 2, device=f0.device, dtype=f0.dtype)
        rad = (f0 * k / self.sampling_rate) % 1  # [B, T, H+1] phase increments in turns
        rand_ini = _rand((b, self.harmonic_num + 1), f0, generator)
        rand_ini[:, 0] = 0
        rad[:, 0, :] = rad[:, 0, :] + rand_ini
        # CosyVoice passes scale_factor=1/480; an explicit size gives the same frame count without float rounding
        frames = max(1, t // self.upsample_scale)
        rad = F.interpolate(rad.transpose(1, 2), size=frames, mode="linear")
        phase = torch.cumsum(rad, dim=-1) * 2 * math.pi
        phase = F.interpolate(phase * self.upsample_scale, size=t, mode="linear").transpose(1, 2)
        return self._mix(torch.sin(phase) * self.sine_amp, f0, generator)


class SourceModuleHnNSF(nn.Module):
    """``f0 [B, T, 1] -> excitation [B, T, 1]`` = ``tanh(l_linear(sines))`` (the harmonic-plus-noise source)."""

    def __init__(self, sampling_rate: int, upsample_scale: int, harmonic_num: int = 8, sine_amp: float = 0.1,
                 add_noise_std: float = 0.003, voiced_threshold: float = 10.0, sine_generator: str = "sinegen2"):
        super().__init__()
        self.sine_amp = sine_amp
        if sine_generator == "sinegen":
            self.l_sin_gen: SineGen | SineGen2 = SineGen(sampling_rate, harmonic_num, sine_amp, add_noise_std,
                                                         voiced_threshold)
        else:
            self.l_sin_gen = SineGen2(sampling_rate, upsample_scale, harmonic_num, sine_amp, add_noise_std,
                                      voiced_threshold)
        self.l_linear = nn.Linear(harmonic_num + 1, 1)
        self.l_tanh = nn.Tanh()

    def forward(self, f0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``f0 [B, T, 1]`` in Hz -> the merged excitation ``[B, T, 1]`` (CosyVoice also returns a noise branch
        and the voicing mask, which HiFT never uses)."""
        sines, _ = self.l_sin_gen(f0, generator)
        return self.l_tanh(self.l_linear(sines))
