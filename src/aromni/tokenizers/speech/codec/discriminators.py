"""Discriminators for the optional GAN phase: multi-period (HiFi-GAN) and multi-resolution (UnivNet) ones.

Both return, for a waveform batch ``[B, T]``, a list of logits tensors (one per sub-discriminator) and a list
of feature-map lists for feature matching. Channel widths are scaled by ``width`` to fit CPU budgets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

Logits = list[torch.Tensor]
Features = list[list[torch.Tensor]]


def _conv_stack(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU conv stack -> (flattened logits ``[B, N]``, every layer's activations for feature matching)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return x.flatten(1), feats


class PeriodDiscriminator(nn.Module):
    """Reshape ``[B, T]`` to ``[B, 1, T/p, p]`` and run 2-D convs along time with kernel (5, 1)."""

    def __init__(self, period: int, width: int = 16):
        super().__init__()
        self.period = period
        chans = [1, width, 4 * width, 16 * width, 32 * width, 32 * width]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3, 1) if i < 4 else (1, 1), padding=(2, 0)))
            for i in range(5))
        self.post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, t = x.shape
        x = F.pad(x, (0, -t % self.period), mode="reflect" if t > self.period else "constant")
        return _conv_stack(self.convs, self.post, x.reshape(b, 1, -1, self.period))


class ResolutionDiscriminator(nn.Module):
    """2-D convs over a magnitude spectrogram (time x frequency) at one STFT resolution."""

    def __init__(self, n_fft: int, hop: int, width: int = 32):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.ones(n_fft), persistent=False)
        k = [(7, 5), (5, 3), (5, 3), (3, 3), (3, 3)]
        s = [(2, 2), (2, 1), (2, 2), (2, 1), (1, 1)]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(1 if i == 0 else width, width, k[i], s[i], padding=(k[i][0] // 2, k[i][1] // 2)))
            for i in range(5))
        self.post = weight_norm(nn.Conv2d(width, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, return_complex=True).abs()
        return _conv_stack(self.convs, self.post, spec.unsqueeze(1))  # [B, 1, F, N]


class CodecDiscriminator(nn.Module):
    """Multi-period + multi-resolution discriminator: ``[B, T] -> (logits list, feature lists)``."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11),
                 resolutions: Sequence[tuple[int, int]] = ((1024, 256), (512, 128), (256, 64)),
                 period_width: int = 8, resolution_width: int = 32):
        super().__init__()
        self.subs = nn.ModuleList([PeriodDiscriminator(p, period_width) for p in periods]
                                  + [ResolutionDiscriminator(n, h, resolution_width) for n, h in resolutions])

    def forward(self, x: torch.Tensor) -> tuple[Logits, Features]:
        logits, feats = [], []
        for d in self.subs:
            lg, ft = d(x)
            logits.append(lg)
            feats.append(ft)
        return logits, feats
