"""Reconstruction and adversarial losses for codec training.

* multi-resolution log-mel L1 and STFT loss (spectral convergence + log-magnitude L1) sharing one STFT per
  resolution (built on :mod:`aromni.tokenizers.speech.mel`);
* hinge GAN losses and feature matching (as in HiFi-GAN / Vocos / WavTokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from aromni.tokenizers.speech.mel import LogMel, MelConfig

#: (n_fft, hop, n_mels) at 16 kHz: 16 ms to 128 ms windows.
DEFAULT_RESOLUTIONS = ((256, 64, 40), (512, 128, 64), (1024, 256, 80), (2048, 512, 128))


class MultiResolutionSpectralLoss(nn.Module):
    """Per resolution, from one STFT of each waveform ``[B, T]``:

    * ``mel``: L1 between natural-log mel spectrograms (floor 1e-5);
    * ``stft``: spectral convergence ``||S_t - S_p||_F / ||S_t||_F`` + L1 between log magnitudes.

    Both are averaged over resolutions. The target's spectra carry no gradient.
    """

    def __init__(self, sample_rate: int, resolutions: Sequence[tuple[int, int, int]] = DEFAULT_RESOLUTIONS):
        super().__init__()
        self.mels = nn.ModuleList(LogMel(MelConfig(sample_rate=sample_rate, n_fft=n, hop_length=h, n_mels=m))
                                  for n, h, m in resolutions)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel_total, stft_total = pred.new_zeros(()), pred.new_zeros(())
        for m in self.mels:
            p = m.magnitudes(pred)  # [B, n_fft/2+1, frames]
            with torch.no_grad():
                t = m.magnitudes(target)
            floor = m.cfg.log_floor
            mel_p = torch.log(torch.einsum("bft,fm->bmt", p, m.fb).clamp(min=floor))
            with torch.no_grad():
                mel_t = torch.log(torch.einsum("bft,fm->bmt", t, m.fb).clamp(min=floor))
            mel_total = mel_total + (mel_p - mel_t).abs().mean()
            sc = torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp(min=1e-7)
            stft_total = stft_total + sc + (torch.log(p.clamp(min=floor)) - torch.log(t.clamp(min=floor))).abs().mean()
        return mel_total / len(self.mels), stft_total / len(self.mels)


def discriminator_hinge(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``, averaged over sub-discriminators."""
    terms = [torch.relu(1 - r).mean() + torch.relu(1 + f).mean() for r, f in zip(real, fake, strict=True)]
    return sum(terms) / len(terms)


def generator_hinge(fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """``mean(relu(1 - D(G(z))))``, averaged over sub-discriminators."""
    return sum(torch.relu(1 - f).mean() for f in fake) / len(fake)


def feature_matching(real_feats: Sequence[Sequence[torch.Tensor]],
                     fake_feats: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """L1 between discriminator activations on real and generated audio: summed over layers, averaged over
    sub-discriminators."""
    per_disc = [sum((r.detach() - f).abs().mean() for r, f in zip(rs, fs, strict=True))
                for rs, fs in zip(real_feats, fake_feats, strict=True)]
    return sum(per_disc) / len(per_disc)
