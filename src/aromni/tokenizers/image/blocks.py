"""Encoder and decoder of the taming-transformers VQGAN (the architecture Chameleon's image tokenizer uses).

Module attribute names are part of the checkpoint format: they reproduce the keys of Meta's ``vqgan.ckpt``
(``encoder.down.1.block.0.nin_shortcut.weight``, ``decoder.up.3.upsample.conv.bias``, ``encoder.mid.attn_1.q.weight``...).
All tensors are ``[B, C, H, W]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aromni.tokenizers.image.config import VQGANConfig


def swish(x: torch.Tensor) -> torch.Tensor:
    # Written out (not F.silu) to keep the reference's exact float operations.
    return x * torch.sigmoid(x)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


def conv3(cin: int, cout: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=padding)


class VQResnetBlock(nn.Module):
    """norm -> swish -> conv3 -> norm -> swish -> dropout -> conv3, plus a 1x1 ``nin_shortcut`` when widths differ."""

    def __init__(self, cin: int, cout: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = group_norm(cin, groups)
        self.conv1 = conv3(cin, cout)
        self.norm2 = group_norm(cout, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3(cout, cout)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class VQAttnBlock(nn.Module):
    """Single-head self-attention over the ``H*W`` positions, scale ``C ** -0.5``, residual."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, hh, ww = x.shape
        q = self.q(h).reshape(b, c, hh * ww).transpose(1, 2)  # [B, HW, C]
        k = self.k(h).reshape(b, c, hh * ww)  # [B, C, HW]
        v = self.v(h).reshape(b, c, hh * ww)  # [B, C, HW]
        attn = torch.softmax(torch.bmm(q, k) * (int(c) ** -0.5), dim=2)  # [B, HWq, HWk]
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then a stride-2 3x3 conv: ``H -> H / 2``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3(channels, channels, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv: ``H -> 2 H``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: ``block`` (VQResnetBlocks), ``attn`` (one VQAttnBlock per block, or none), resampler."""

    def __init__(self, widths: list[tuple[int, int]], use_attn: bool, groups: int, dropout: float):
        super().__init__()
        self.block = nn.ModuleList(VQResnetBlock(i, o, groups, dropout) for i, o in widths)
        self.attn = nn.ModuleList(VQAttnBlock(o, groups) for _, o in widths) if use_attn else nn.ModuleList()

    def run_blocks(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        return h


class Middle(nn.Module):
    """VQResnetBlock, VQAttnBlock, VQResnetBlock at the lowest resolution."""

    def __init__(self, channels: int, groups: int, dropout: float):
        super().__init__()
        self.block_1 = VQResnetBlock(channels, channels, groups, dropout)
        self.attn_1 = VQAttnBlock(channels, groups)
        self.block_2 = VQResnetBlock(channels, channels, groups, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class VQGANEncoder(nn.Module):
    """Image ``[B, in_channels, R, R]`` -> features ``[B, z_channels, R/f, R/f]`` with ``f = 2 ** (levels - 1)``."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        g, p = cfg.norm_groups, cfg.dropout
        self.conv_in = conv3(cfg.in_channels, cfg.ch)
        self.down = nn.ModuleList()
        res, cin = cfg.resolution, cfg.ch
        for i, mult in enumerate(cfg.ch_mult):
            cout = cfg.ch * mult
            widths = [(cin if j == 0 else cout, cout) for j in range(cfg.num_res_blocks)]
            level = Level(widths, res in cfg.attn_resolutions, g, p)
            if i != len(cfg.ch_mult) - 1:
                level.downsample = Downsample(cout)
                res //= 2
            self.down.append(level)
            cin = cout
        self.mid = Middle(cin, g, p)
        self.norm_out = group_norm(cin, g)
        self.conv_out = conv3(cin, cfg.z_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level.run_blocks(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h)))


class VQGANDecoder(nn.Module):
    """Features ``[B, z_channels, r, r]`` -> image ``[B, out_ch, r*f, r*f]`` (no tanh: output is unbounded).

    ``up[i]`` is stored at index ``i`` but run from the last level to the first, as in the reference.
    """

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        g, p, n = cfg.norm_groups, cfg.dropout, len(cfg.ch_mult)
        cin = cfg.ch * cfg.ch_mult[-1]
        res = cfg.resolution // cfg.downsample_factor
        self.conv_in = conv3(cfg.z_channels, cin)
        self.mid = Middle(cin, g, p)
        levels: list[Level] = []
        for i in reversed(range(n)):
            cout = cfg.ch * cfg.ch_mult[i]
            widths = [(cin if j == 0 else cout, cout) for j in range(cfg.num_res_blocks + 1)]
            level = Level(widths, res in cfg.attn_resolutions, g, p)
            if i != 0:
                level.upsample = Upsample(cout)
                res *= 2
            levels.insert(0, level)
            cin = cout
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(cin, g)
        self.conv_out = conv3(cin, cfg.out_ch)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level.run_blocks(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))
