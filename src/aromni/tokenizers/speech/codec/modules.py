"""Building blocks: streaming causal convolutions, per-frame LayerNorm, ConvNeXt blocks, a frame delay.

Nothing here normalises over time: LayerNorm runs over channels of one frame, so a frame's output depends only
on the frames inside its convolution receptive field.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aromni.tokenizers.streaming import StreamingModule


@dataclass
class ConvState:
    history: torch.Tensor  # [B, C_in, (k - 1) * dilation]: the last inputs, the left padding of the next chunk


class StreamingConv1d(StreamingModule[ConvState]):
    """1-D convolution over frames ``[B, C, T] -> [B, C_out, T]`` (stride 1).

    ``causal=True``: left zero padding of ``(k-1)*dilation`` frames; streaming carries those frames between
    calls, so chunked output equals one-shot output. ``causal=False``: symmetric "same" padding (offline only).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, *, dilation: int = 1, groups: int = 1,
                 causal: bool = True, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation, groups=groups, bias=bias)
        self.causal = causal
        self.context = (kernel - 1) * dilation

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> ConvState:
        if not self.causal:
            raise RuntimeError("a non-causal convolution cannot stream")
        return ConvState(torch.zeros(batch_size, self.conv.in_channels, self.context, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state: ConvState | None = self._streaming_state
        if state is None:
            left = self.context if self.causal else self.context // 2
            return self.conv(F.pad(x, (left, self.context - left)))
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.conv.out_channels, 0)
        x = torch.cat([state.history, x], dim=-1)
        if self.context:
            state.history = x[..., x.shape[-1] - self.context:]
        return self.conv(x)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over channels of each frame of ``[B, C, T]`` (no statistics over time)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class StreamingConvNeXtBlock(nn.Module):
    """Depthwise conv (k) -> LayerNorm -> Linear(dim, r*dim) -> GELU -> Linear -> layer scale, residual.

    ``[B, C, T] -> [B, C, T]``; causal (streamable) or symmetric depending on ``causal``. Not the same block as
    WavTokenizer's :class:`~aromni.tokenizers.speech.wavtokenizer.backbone.AdaConvNeXtBlock`: that one is
    conditioned on a bandwidth id (AdaLayerNorm), has a fixed "same"-padded kernel of 7 and cannot stream.
    """

    def __init__(self, dim: int, kernel: int, mlp_ratio: float, layer_scale: float, *, causal: bool):
        super().__init__()
        hidden = round(dim * mlp_ratio)
        self.dwconv = StreamingConv1d(dim, dim, kernel, groups=dim, causal=causal)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.pwconv2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)  # [B, T, C]
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


@dataclass
class DelayState:
    to_drop: int  # leading frames still to discard


class FrameDelay(StreamingModule[DelayState]):
    """Drop the first ``delay`` frames of ``[B, C, T]``: turns a causal network into one with lookahead.

    Frame ``t`` of the output comes from network step ``t + delay``, which has seen codes up to ``t + delay``.
    """

    def __init__(self, delay: int):
        super().__init__()
        self.delay = delay

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> DelayState:
        return DelayState(self.delay)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state: DelayState | None = self._streaming_state
        if state is None:
            return x[..., self.delay:]
        n = min(state.to_drop, x.shape[-1])
        state.to_drop -= n
        return x[..., n:]
