"""Reconstruction quality measures on uint8 images (what a viewer sees after :func:`~.preprocess.to_pil`)."""

from __future__ import annotations

import math

import torch


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` in [-1, 1] -> uint8 with the reference post-processing (clamp, scale, truncate)."""
    return ((torch.clamp(x.detach().float(), -1.0, 1.0) + 1.0) / 2.0 * 255).to(torch.uint8)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB between uint8 image batches ``[B, 3, H, W]`` (MSE over all pixels of the batch)."""
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def color_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute per-channel error in 0..255 units between uint8 batches ``[B, 3, H, W]``."""
    return torch.mean(torch.abs(a.double() - b.double())).item()


def perplexity(counts: torch.Tensor) -> float:
    """``exp(entropy)`` of a code histogram ``[K]``: the effective number of codes in use."""
    p = counts.double() / counts.sum().clamp(min=1)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
