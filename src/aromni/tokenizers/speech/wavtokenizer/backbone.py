"""Vocos backbone of WavTokenizer: embed conv, pos_net (GroupNorm resnets + one global attention), AdaLayerNorm,
ConvNeXt blocks, final LayerNorm. Attribute names follow the official checkpoint keys (``backbone.*``).

Note for streaming: the pos_net GroupNorms and the attention see *all* frames, so the output of a frame depends
on the whole code sequence (see ``streaming.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aromni.tokenizers.speech.wavtokenizer.config import POS_NET_GROUPS, WavTokenizerConfig

_EPS = 1e-6


def _group_norm(dim: int) -> nn.GroupNorm:
    return nn.GroupNorm(POS_NET_GROUPS, dim, eps=_EPS, affine=True)


class PosResnetBlock(nn.Module):
    """``x + conv2(drop(swish(norm2(conv1(swish(norm1(x)))))))`` on ``[B, C, L]`` (k3 convs, same width)."""

    def __init__(self, dim: int, dropout: float = 0.1):
        super().__init__()
        self.norm1 = _group_norm(dim)
        self.conv1 = nn.Conv1d(dim, dim, 3, padding=1)
        self.norm2 = _group_norm(dim)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return x + h


class AttnBlock(nn.Module):
    """Single-head, non-causal self-attention over all frames of ``[B, C, L]`` with 1x1 conv projections."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = _group_norm(dim)
        self.q = nn.Conv1d(dim, dim, 1)
        self.k = nn.Conv1d(dim, dim, 1)
        self.v = nn.Conv1d(dim, dim, 1)
        self.proj_out = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = (m(h).transpose(1, 2) for m in (self.q, self.k, self.v))  # [B, L, C]
        weights = torch.softmax(q @ k.transpose(1, 2) * q.shape[-1] ** -0.5, dim=-1)  # [B, L_q, L_k]
        return x + self.proj_out((weights @ v).transpose(1, 2))


class AdaLayerNorm(nn.Module):
    """LayerNorm without affine, then ``* scale[bandwidth_id] + shift[bandwidth_id]`` on ``[B, L, C]``."""

    def __init__(self, num_embeddings: int, dim: int):
        super().__init__()
        self.dim = dim
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, bandwidth_id: torch.Tensor) -> torch.Tensor:
        """``bandwidth_id``: int64 ``[B]`` or ``[1]`` (broadcast over the batch)."""
        x = F.layer_norm(x, (self.dim,), eps=_EPS)
        return x * self.scale(bandwidth_id)[:, None, :] + self.shift(bandwidth_id)[:, None, :]


class AdaConvNeXtBlock(nn.Module):
    """``x + gamma * pw2(gelu(pw1(adanorm(dwconv(x)))))`` on ``[B, C, L]``, conditioned on ``bandwidth_id``.

    Vocos' block with AdaLayerNorm and a "same"-padded k7 depthwise conv (offline only); the codec's causal,
    streamable variant without conditioning is
    :class:`~aromni.tokenizers.speech.codec.modules.StreamingConvNeXtBlock`.
    """

    def __init__(self, dim: int, intermediate_dim: int, num_layers: int, num_embeddings: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = AdaLayerNorm(num_embeddings, dim)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1.0 / num_layers))

    def forward(self, x: torch.Tensor, bandwidth_id: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.dwconv(x).transpose(1, 2), bandwidth_id)
        h = self.gamma * self.pwconv2(F.gelu(self.pwconv1(h)))
        return x + h.transpose(1, 2)


class VocosBackbone(nn.Module):
    """``vectors [B, dimension, L], bandwidth_id -> hidden [B, L, backbone_dim]``."""

    def __init__(self, cfg: WavTokenizerConfig):
        super().__init__()
        dim = cfg.backbone_dim
        self.embed = nn.Conv1d(cfg.dimension, dim, 7, padding=3)
        self.pos_net = nn.Sequential(PosResnetBlock(dim), PosResnetBlock(dim), AttnBlock(dim),
                                     PosResnetBlock(dim), PosResnetBlock(dim), _group_norm(dim))
        self.norm = AdaLayerNorm(cfg.adanorm_num_embeddings, dim)
        self.convnext = nn.ModuleList(AdaConvNeXtBlock(dim, cfg.intermediate_dim, cfg.num_layers,
                                                    cfg.adanorm_num_embeddings) for _ in range(cfg.num_layers))
        self.final_layer_norm = nn.LayerNorm(dim, eps=_EPS)

    def forward(self, x: torch.Tensor, bandwidth_id: torch.Tensor) -> torch.Tensor:
        x = self.pos_net(self.embed(x))
        x = self.norm(x.transpose(1, 2), bandwidth_id).transpose(1, 2)
        for block in self.convnext:
            x = block(x, bandwidth_id)
        return self.final_layer_norm(x.transpose(1, 2))
