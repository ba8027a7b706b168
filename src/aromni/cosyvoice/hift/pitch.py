"""A cheap F0 target for training HiFT's F0 predictor: YIN (de Cheveigne & Kawahara 2002) in batched torch, framed
exactly like the Matcha mel so frame ``t`` of the F0 track is frame ``t`` of :func:`~aromni.cosyvoice.mel.matcha_mel`.

Per frame (reflect padding of ``(frame - hop) / 2``, frames of ``frame`` samples every ``hop``): the difference
function ``d(tau) = sum_{j<w} (x_j - x_{j+tau})^2`` (``w = frame - tau_max``; the cross term by FFT), its
cumulative-mean normalisation ``d'(tau) = d(tau) tau / sum_{k<=tau} d(k)``, the first local minimum of ``d'`` under
``threshold`` in ``[sr/fmax, sr/fmin]`` (else the global minimum), refined by a parabola. A frame is voiced when
that minimum is under ``voicing`` and its RMS is above ``rel_rms`` times the clip's loudest frame; unvoiced frames
get F0 0 (HiFT's source treats F0 <= 10 Hz as unvoiced).

CosyVoice's own recipe extracts F0 with pyworld; YIN needs nothing outside torch and is accurate on the clean
espeak speech of the toy world.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from aromni.errors import InputError

__all__ = ["yin_f0"]


def _cmndf(frames: torch.Tensor, tau_max: int) -> torch.Tensor:
    """``frames [B, N, L]`` -> cumulative-mean-normalised difference ``[B, N, tau_max + 1]``."""
    length = frames.shape[-1]
    w = length - tau_max
    n = 1 << math.ceil(math.log2(length + w))
    spec = torch.fft.rfft(frames, n) * torch.fft.rfft(frames[..., :w], n).conj()
    cross = torch.fft.irfft(spec, n)[..., : tau_max + 1]  # sum_{j<w} x_j x_{j+tau}
    cs = F.pad(frames.pow(2).cumsum(-1), (1, 0))
    tau = torch.arange(tau_max + 1, device=frames.device)
    energy = cs[..., tau + w] - cs[..., tau]  # sum_{j<w} x_{j+tau}^2
    d = (cs[..., w:w + 1] + energy - 2 * cross).clamp(min=0)
    d[..., 0] = 0
    mean = d[..., 1:].cumsum(-1) / tau[1:]
    return torch.cat([torch.ones_like(d[..., :1]), d[..., 1:] / mean.clamp(min=1e-12)], dim=-1)


@torch.no_grad()
def yin_f0(wav: torch.Tensor, sample_rate: int = 24000, *, hop: int = 480, frame: int = 1920, fmin: float = 60.0,
           fmax: float = 500.0, threshold: float = 0.15, voicing: float = 0.35, rel_rms: float = 0.03
           ) -> torch.Tensor:
    """``wav [B, T]`` -> F0 ``[B, T // hop]`` in Hz, 0 where unvoiced."""
    if wav.dim() != 2 or wav.shape[-1] < hop:
        raise InputError(f"yin_f0 expects a [B, T >= {hop}] waveform, got shape {tuple(wav.shape)}")
    tau_min, tau_max = int(sample_rate // fmax), int(math.ceil(sample_rate / fmin))
    if tau_max >= frame // 2:
        raise InputError(f"yin_f0: fmin {fmin} Hz needs frames longer than {frame} samples")
    pad = (frame - hop) // 2
    x = F.pad(wav.float()[:, None], (pad, pad), mode="reflect" if wav.shape[-1] > pad else "constant")[:, 0]
    frames = x.unfold(-1, frame, hop)[:, : wav.shape[-1] // hop]  # [B, N, frame]
    frames = frames - frames.mean(-1, keepdim=True)
    d = _cmndf(frames, tau_max)
    lo = d[..., tau_min - 1: tau_max]
    mid, left, right = lo[..., 1:-1], lo[..., :-2], lo[..., 2:]
    dips = (mid < left) & (mid <= right) & (mid < threshold)  # local minima under the threshold
    first = dips.int().argmax(-1)
    best = torch.where(dips.any(-1), first, mid.argmin(-1))  # index into mid
    a, b, c = (t.gather(-1, best[..., None])[..., 0] for t in (left, mid, right))
    denom = a - 2 * b + c
    offset = torch.where(denom.abs() > 1e-9, 0.5 * (a - c) / denom, torch.zeros_like(denom)).clamp(-1, 1)
    tau = best.float() + tau_min + offset
    rms = frames.pow(2).mean(-1).sqrt()
    voiced = (b < voicing) & (rms > rel_rms * rms.amax(-1, keepdim=True))
    return torch.where(voiced, sample_rate / tau, torch.zeros_like(tau))
