"""The single EMA codebook of WavTokenizer (inference side: nearest-neighbour encode, lookup decode).

The four buffers mirror the official ``EuclideanCodebook`` so a checkpoint round-trips completely; only
``embed`` is used at inference (``cluster_size``/``embed_avg``/``inited`` are EMA training statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Codebook(nn.Module):
    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.register_buffer("inited", torch.ones(1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", torch.randn(codebook_size, dim))
        self.register_buffer("embed_avg", self.embed.clone())

    @property
    def codebook_size(self) -> int:
        return self.embed.shape[0]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, D, F] -> codes [B, F]`` (int64): nearest entry by squared L2 distance."""
        b, d, f = x.shape
        flat = x.transpose(1, 2).reshape(b * f, d)
        embed = self.embed.to(flat.dtype)
        # argmax of -(|x|^2 - 2 x.e + |e|^2), the same expression (and tie-breaking) as the official code.
        dist = -(flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed.t() + embed.pow(2).sum(1)[None])
        return dist.argmax(dim=-1).view(b, f)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, F] -> vectors [B, D, F]``."""
        return F.embedding(codes, self.embed).transpose(1, 2)
