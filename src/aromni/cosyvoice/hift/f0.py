"""HiFT's F0 predictor (CosyVoice's ``ConvRNNF0Predictor``, despite the name a plain conv stack):
five weight-normalised ``Conv1d(k=3, pad=1)`` + ELU layers, a ``Linear(C -> 1)`` per frame, then ``abs``.

State-dict keys: ``condnet.{0,2,4,6,8}.*`` (the ELUs sit at the odd indices) and ``classifier.{weight,bias}``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["ConvRNNF0Predictor"]


class ConvRNNF0Predictor(nn.Module):
    """``mel [B, in_channels, F] -> F0 [B, F]`` in Hz (non-negative; values at or below the source's voiced
    threshold mean unvoiced)."""

    def __init__(self, in_channels: int = 80, cond_channels: int = 512, num_class: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(5):
            layers += [weight_norm(nn.Conv1d(in_channels if i == 0 else cond_channels, cond_channels, 3, padding=1)),
                       nn.ELU()]
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(cond_channels, num_class)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.condnet(mel).transpose(1, 2)  # [B, F, C]
        return self.classifier(x).squeeze(-1).abs()
