"""The no-training baseline vocoder: Matcha log-mel -> linear magnitude (pseudo-inverse of the mel filters,
clipped at 0) -> Griffin-Lim with momentum ("fast Griffin-Lim", librosa's default 0.99), our own on
``torch.stft`` / ``torch.istft``.

Framing: Matcha's frame ``t`` (reflect-padded, ``center=False``) is centred on sample ``480 t + 240``, half a hop
later than ``torch.stft(center=True)``'s frame ``t``. We therefore reconstruct a signal shifted by 240 samples,
whose ``center=True`` frames ``1..F`` are the mel frames (frames ``0`` and ``F + 1`` repeat the edge magnitudes),
and cut the ``480 F`` samples back out.
"""

from __future__ import annotations

import torch

from aromni.cosyvoice.mel import MATCHA_24K, MatchaMel, MatchaMelConfig
from aromni.errors import InputError

__all__ = ["griffin_lim_from_mel"]


@torch.no_grad()
def griffin_lim_from_mel(mel: torch.Tensor, cfg: MatchaMelConfig = MATCHA_24K, *, iters: int = 60,
                         momentum: float = 0.99, seed: int = 0) -> torch.Tensor:
    """``mel [B, n_mels, F]`` (natural-log Matcha mel) -> ``wav [B, F * hop]``."""
    if mel.dim() != 3 or mel.shape[1] != cfg.n_mels or mel.shape[2] == 0:
        raise InputError(f"griffin_lim_from_mel expects a mel [B, {cfg.n_mels}, F >= 1], got {tuple(mel.shape)}")
    fb = MatchaMel(cfg).fb.to(mel.device)  # [n_freq, n_mels]
    mag = (torch.linalg.pinv(fb.T) @ mel.float().exp()).clamp(min=0)  # [B, n_freq, F]
    mag = torch.cat([mag[..., :1], mag, mag[..., -1:]], dim=-1)  # [B, n_freq, F + 2]
    hop, n_fft = cfg.hop_length, cfg.n_fft
    length = hop * (mel.shape[2] + 1)
    window = torch.hann_window(cfg.win_length, device=mel.device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    angles = torch.polar(torch.ones_like(mag), (torch.rand(mag.shape, generator=gen) * 2 * torch.pi).to(mag))
    prev = torch.zeros_like(angles)
    for _ in range(iters):
        z = torch.istft(mag * angles, n_fft, hop, cfg.win_length, window, length=length)
        rebuilt = torch.stft(z, n_fft, hop, cfg.win_length, window, return_complex=True)
        angles = rebuilt - (momentum / (1 + momentum)) * prev
        angles = angles / (angles.abs() + 1e-16)
        prev = rebuilt
    z = torch.istft(mag * angles, n_fft, hop, cfg.win_length, window, length=length)
    return z[:, hop // 2: hop // 2 + hop * mel.shape[2]]
