"""Training-time corruptions for the judges, so that they read codec/VQGAN output about as well as ground truth.

Speech (log-mel ``[B, M, F]``, precomputed once): tempo change, frequency warp, frequency blur, time smear, band
limiting, additive noise, SpecAugment masks. Images (``[B, 3, 64, 64]`` in [0, 1]): JPEG round trips, Gaussian blur, down/up-sampling, blending with
8×8 block means (what a VQ grid does), colour shift, noise, posterisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from aromni.tokenizers.speech.mel import hz_to_mel


def _rand(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _mel_bin(hz: float, n_mels: int, sr: int = 16000) -> int:
    return int(n_mels * float(hz_to_mel(torch.tensor(hz))) / float(hz_to_mel(torch.tensor(sr / 2))))


def augment_logmel(m: torch.Tensor, n: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt raw (un-normalised, natural-log) mels ``[B, M, F]`` with ``n [B]`` valid frames.

    Works in the mel domain so it costs almost nothing next to the model: tempo change (time resampling),
    vocal-tract warp (frequency resampling), additive noise, band limiting, frequency blur and time smear (what a
    weak codec/vocoder does to harmonics and transitions). One draw per batch. Returns ``(mel, n)``.
    """
    _, mels, f = m.shape
    if float(torch.rand((), generator=g)) < 0.6:  # tempo 0.85..1.15
        factor = _rand(g, 0.85, 1.15)
        new_f = max(8, round(f / factor))
        m = F.interpolate(m, size=new_f, mode="linear", align_corners=False)
        n = (n.float() / factor).round().long().clamp(1, new_f)
    if float(torch.rand((), generator=g)) < 0.5:  # frequency warp 0.9..1.1 (speaker/formant shift)
        warp = _rand(g, 0.9, 1.1)
        src = (torch.arange(mels, dtype=m.dtype) / warp).clamp(max=mels - 1)
        lo = src.floor().long()
        hi = (lo + 1).clamp(max=mels - 1)
        w = (src - lo)[None, :, None]
        m = m[:, lo] * (1 - w) + m[:, hi] * w
    lin = m.exp()
    if float(torch.rand((), generator=g)) < 0.3:  # smear harmonics across neighbouring bins
        k = 3 if float(torch.rand((), generator=g)) < 0.7 else 5
        lin = F.avg_pool2d(lin[:, None], (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)[:, 0]
    if float(torch.rand((), generator=g)) < 0.3:  # smear transitions over 3 frames (30 ms)
        lin = F.avg_pool1d(lin, 3, stride=1, padding=1, count_include_pad=False)
    if float(torch.rand((), generator=g)) < 0.5:  # band limit at 2.5..7 kHz
        cut = _mel_bin(_rand(g, 2500, 7000), mels)
        lin[:, cut:] *= 10 ** (-_rand(g, 2, 4))
    if float(torch.rand((), generator=g)) < 0.5:  # stationary noise at 5..35 dB SNR (per mel bin)
        frames = torch.arange(lin.shape[-1])[None, None, :] < n[:, None, None]
        level = (lin * frames).sum((1, 2), keepdim=True) / (n[:, None, None] * mels)
        snr = 10 ** (_rand(g, 5, 35) / 10)
        lin = lin + level / snr * torch.rand(lin.shape, generator=g) * 2
    return lin.clamp(min=1e-5).log(), n


def spec_augment(feats: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Zero two frequency bands (<= 8 bins) and two time spans (<= 12 frames) of normalised mels ``[B, M, F]``."""
    _, m, f = feats.shape
    feats = feats.clone()
    for _ in range(2):
        w = int(_rand(g, 0, 9))
        s = int(_rand(g, 0, m - w))
        feats[:, s : s + w] = 0
        w = int(_rand(g, 0, min(12, f // 8 + 1)))
        s = int(_rand(g, 0, max(1, f - w)))
        feats[:, :, s : s + w] = 0
    return feats


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(2 * sigma))
    x = torch.arange(-r, r + 1, dtype=img.dtype)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    c = img.shape[1]
    img = F.conv2d(F.pad(img, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(img, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    """Round-trip ``[B, 3, H, W]`` in [0, 1] through JPEG: 8×8 block artefacts and ringing, like a coarse codec."""
    import io

    import numpy as np
    from PIL import Image

    out = []
    for x in (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


def augment_image(img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Corrupt ``[B, 3, H, W]`` images in [0, 1]. Each corruption hits a random subset of the batch."""
    b = img.shape[0]

    def pick(p: float) -> torch.Tensor:
        return (torch.rand(b, 1, 1, 1, generator=g) < p).to(img.dtype)

    x = img
    x = torch.lerp(x, jpeg(x, int(_rand(g, 10, 60))), pick(0.3))
    x = torch.lerp(x, gaussian_blur(x, _rand(g, 0.3, 1.6)), pick(0.5))
    s = int(_rand(g, 16, 40))
    down_up = F.interpolate(F.interpolate(x, size=s, mode="area"), size=img.shape[-1], mode="bilinear",
                            align_corners=False)
    x = torch.lerp(x, down_up, pick(0.3))
    blocks = F.interpolate(F.avg_pool2d(x, 8), scale_factor=8, mode="nearest")
    x = torch.lerp(x, blocks, pick(0.4) * torch.rand(b, 1, 1, 1, generator=g) * 0.45)
    x = x + (torch.rand(b, 3, 1, 1, generator=g) - 0.5) * 0.1  # colour shift ±0.05
    x = x + torch.randn(x.shape, generator=g) * torch.rand(b, 1, 1, 1, generator=g) * 0.04
    levels = int(_rand(g, 8, 32))
    x = torch.lerp(x, torch.round(x * levels) / levels, pick(0.2))
    return x.clamp(0, 1)
