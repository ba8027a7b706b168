"""SEANet encoder of WavTokenizer (non-causal, reflect padding, ELU, 2-layer LSTM with skip).

Weight norm is folded into plain conv weights when a checkpoint is loaded, so every conv here is a plain
``nn.Conv1d`` whose padding is computed at run time. Module indices inside ``model`` follow the official
layout (0 conv | 1,4,7,10 residual blocks | 2,5,8,11 ELU | 3,6,9,12 strided convs | 13 LSTM | 14 ELU | 15 conv)
so that checkpoint keys map one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aromni.tokenizers.speech.wavtokenizer.config import WavTokenizerConfig


def reflect_pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Reflect-pad the last axis of ``x [B, C, L]``, also when ``L`` is not longer than the padding.

    Reflect padding needs ``pad < L``; shorter inputs are first zero-extended on the right so the reflection is
    defined, and that extension is cut off again afterwards.
    """
    if left == 0 and right == 0:
        return x
    length = x.shape[-1]
    extension = max(0, max(left, right) - length + 1)
    if extension:
        x = F.pad(x, (0, extension))
    x = F.pad(x, (left, right), mode="reflect")
    return x[..., : x.shape[-1] - extension]


class SConv1d(nn.Conv1d):
    """``nn.Conv1d`` with SEANet's non-causal padding: ``ceil(L / stride)`` output frames.

    The effective kernel ``k' = (k - 1) * dilation + 1`` is padded by ``k' - stride`` split as evenly as possible
    (the extra sample goes left), plus just enough on the right that the last window is complete.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, dilation: int = 1):
        super().__init__(cin, cout, kernel_size, stride=stride, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = self.stride[0]
        k_eff = (self.kernel_size[0] - 1) * self.dilation[0] + 1
        total = k_eff - stride
        extra = (-x.shape[-1]) % stride  # completes the last window: ceil(L / stride) frames
        right = total // 2
        return super().forward(reflect_pad(x, total - right, right + extra))


class ResnetBlock(nn.Module):
    """``shortcut(x) + block(x)``, block = [ELU, conv k3 (dim -> dim/compress), ELU, conv k1 (-> dim)]."""

    def __init__(self, dim: int, kernel_size: int, compress: int):
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(nn.ELU(), SConv1d(dim, hidden, kernel_size), nn.ELU(), SConv1d(hidden, dim, 1))
        self.shortcut = SConv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class SLSTM(nn.Module):
    """Unidirectional LSTM over time with a skip connection, on ``[B, C, T]``."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(2, 0, 1)  # [T, B, C]
        y, _ = self.lstm(x)
        return (y + x).permute(1, 2, 0)


class SEANetEncoder(nn.Module):
    """``wav [B, 1, T] -> features [B, dimension, ceil(T / hop)]``."""

    def __init__(self, cfg: WavTokenizerConfig):
        super().__init__()
        ch = cfg.n_filters
        layers: list[nn.Module] = [SConv1d(1, ch, cfg.kernel_size)]
        for stride in cfg.strides:
            layers += [ResnetBlock(ch, cfg.residual_kernel_size, cfg.compress), nn.ELU(),
                       SConv1d(ch, 2 * ch, 2 * stride, stride=stride)]
            ch *= 2
        layers += [SLSTM(ch, cfg.lstm_layers), nn.ELU(), SConv1d(ch, cfg.dimension, cfg.last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.model(wav)
