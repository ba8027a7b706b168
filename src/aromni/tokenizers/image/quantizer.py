"""Nearest-neighbour vector quantizer (taming ``VectorQuantizer2``, ``legacy=True``, no index remapping).

The state dict is exactly ``embedding.weight [n_embed, embed_dim]``. Codes are flattened row-major over the
feature map: ``codes[b, r * w + c]``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class Quantized(NamedTuple):
    """Output of :meth:`VectorQuantizer.forward`.

    ``z_q``: ``[B, D, h, w]`` codebook vectors with a straight-through gradient to the input.
    ``codes``: ``[B, h*w]`` long. ``commitment``: ``mean((sg[e] - z)^2)``. ``codebook``: ``mean((e - sg[z])^2)``.
    ``z``: the input as ``[B*h*w, D]`` (for EMA updates and dead-code restarts).
    """

    z_q: torch.Tensor
    codes: torch.Tensor
    commitment: torch.Tensor
    codebook: torch.Tensor
    z: torch.Tensor


class VectorQuantizer(nn.Module):
    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.n_embed, self.embed_dim = n_embed, embed_dim
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """``z [N, D]`` -> index ``[N]`` of the closest codebook row by squared L2.

        Expanded as ``|z|^2 + |e|^2 - 2 z.e`` in the reference's order of operations so ties and rounding match.
        """
        e = self.embedding.weight
        d = (torch.sum(z**2, dim=1, keepdim=True) + torch.sum(e**2, dim=1)
             - 2 * torch.einsum("bd,dn->bn", z, e.transpose(0, 1)))
        return torch.argmin(d, dim=1)

    def forward(self, z: torch.Tensor) -> Quantized:
        """``z [B, D, h, w]`` -> :class:`Quantized`."""
        b, d, h, w = z.shape
        z_hwc = z.permute(0, 2, 3, 1).contiguous()  # [B, h, w, D]: flattening is row-major
        flat = z_hwc.view(-1, d)
        idx = self.nearest(flat)
        e = self.embedding(idx).view(z_hwc.shape)
        commitment = torch.mean((e.detach() - z_hwc) ** 2)
        codebook = torch.mean((e - z_hwc.detach()) ** 2)
        z_q = (z_hwc + (e - z_hwc).detach()).permute(0, 3, 1, 2).contiguous()
        return Quantized(z_q, idx.view(b, h * w), commitment, codebook, flat)

    def lookup(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Codes ``[B, h*w]`` -> codebook vectors ``[B, D, h, w]``."""
        h, w = grid
        return self.embedding(codes).view(codes.shape[0], h, w, self.embed_dim).permute(0, 3, 1, 2).contiguous()
