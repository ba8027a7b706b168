"""CosyVoice2's velocity estimator ``CausalConditionalDecoder`` (``cosyvoice/flow/decoder.py``, built from
Matcha-TTS's ``ResnetBlock1D`` / ``TimestepEmbedding`` and diffusers-style ``BasicTransformerBlock`` s): a
one-level causal 1-D U-Net on ``[x, mu, spk, cond]`` (4 x 80 = 320 channels) returning a velocity of 80 channels.

Parameter names follow the released ``flow.pt`` (``decoder.estimator.*``): ``time_mlp.linear_{1,2}``,
``down_blocks.0.{0: resnet, 1: transformer blocks, 2: causal conv}``, ``mid_blocks.i.{0, 1}``,
``up_blocks.0.{0, 1, 2}``, ``final_block``, ``final_proj``; a resnet is ``mlp.1``, ``block{1,2}.block.{0: causal
conv, 2: LayerNorm}``, ``res_conv``; a transformer block ``norm1``, ``attn1.to_{q,k,v}`` (no bias),
``attn1.to_out.0``, ``norm3``, ``ff.net.0.proj``, ``ff.net.2``.

Every convolution is causal and every norm is per frame, so a frame depends on later frames only through
attention: full attention over the valid frames, or (``streaming=True``) static chunks of
``chunk_frames`` frames (a frame sees its own chunk and every earlier one).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aromni.cosyvoice.flow.config import EstimatorConfig
from aromni.cosyvoice.flow.encoder import chunk_mask

__all__ = ["CausalConditionalDecoder"]


class CausalConv1d(nn.Conv1d):
    """A stride-1 Conv1d left-padded by ``kernel - 1`` zeros."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.kernel_size[0] - 1, 0)))


class Transpose(nn.Module):
    """Swap the channel and time axes (so LayerNorm normalises each frame's channels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class CausalBlock1D(nn.Module):
    """``block`` = causal conv (k3), LayerNorm over channels, Mish; masked in and out."""

    def __init__(self, dim: int, dim_out: int):
        super().__init__()
        self.block = nn.Sequential(CausalConv1d(dim, dim_out, 3), Transpose(), nn.LayerNorm(dim_out), Transpose(),
                                   nn.Mish())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.block(x * mask) * mask


class CausalResnetBlock1D(nn.Module):
    """Two causal blocks with the time embedding added between them, plus a 1x1 residual conv."""

    def __init__(self, dim: int, dim_out: int, time_emb_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Mish(), nn.Linear(time_emb_dim, dim_out))
        self.block1 = CausalBlock1D(dim, dim_out)
        self.block2 = CausalBlock1D(dim_out, dim_out)
        self.res_conv = nn.Conv1d(dim, dim_out, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x [B, C, T]``, ``mask [B, 1, T]``, ``t [B, time_emb_dim]`` -> ``[B, C_out, T]``."""
        h = self.block1(x, mask) + self.mlp(t)[..., None]
        return self.block2(h, mask) + self.res_conv(x * mask)


class GELUProj(nn.Module):
    """diffusers' ``GELU``: ``gelu(proj(x))`` (exact GELU)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))


class EstimatorAttention(nn.Module):
    """diffusers' ``Attention`` as ``BasicTransformerBlock`` builds it: q/k/v without bias, ``heads * head_dim``
    inner width, ``to_out = [Linear, Dropout]``."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(dropout)])

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x [B, T, dim]``, additive ``bias [B, 1, T, T]`` -> ``[B, T, dim]``."""
        b, t, _ = x.shape
        q, k, v = (f(x).view(b, t, self.heads, -1).transpose(1, 2) for f in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.to_out[1](self.to_out[0](out.transpose(1, 2).reshape(b, t, -1)))


class BasicTransformerBlock(nn.Module):
    """Pre-norm self-attention then a GELU feed-forward (4x), both residual; no cross-attention."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = EstimatorAttention(dim, heads, head_dim, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = nn.Module()
        self.ff.net = nn.ModuleList([GELUProj(dim, 4 * dim), nn.Dropout(dropout), nn.Linear(4 * dim, dim)])

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x), bias)
        h = self.norm3(x)
        for layer in self.ff.net:
            h = layer(h)
        return x + h


class TimestepEmbedding(nn.Module):
    """``linear_2(silu(linear_1(sinusoid(t))))``."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(in_channels, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


def sinusoidal_time(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Matcha's ``SinusoidalPosEmb``: ``t [B]`` -> ``[B, dim]`` = ``[sin(s t f), cos(s t f)]``, ``f_k =
    10000^(-k / (dim/2 - 1))``."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device).float() * -(math.log(10000) / (half - 1)))
    emb = scale * t.float()[:, None] * freqs[None]
    return torch.cat((emb.sin(), emb.cos()), dim=-1)


class CausalConditionalDecoder(nn.Module):
    """See the module docstring. ``chunk_frames``: the static chunk of the streaming mode (CosyVoice2: 50)."""

    def __init__(self, cfg: EstimatorConfig, chunk_frames: int):
        super().__init__()
        self.cfg, self.chunk_frames = cfg, chunk_frames
        c, temb = cfg.channels, cfg.time_embed_dim
        self.time_mlp = TimestepEmbedding(cfg.in_channels, temb)

        def transformers() -> nn.ModuleList:
            return nn.ModuleList(BasicTransformerBlock(c, cfg.num_heads, cfg.attention_head_dim, cfg.dropout)
                                 for _ in range(cfg.n_blocks))

        self.down_blocks = nn.ModuleList([nn.ModuleList([CausalResnetBlock1D(cfg.in_channels, c, temb), transformers(),
                                                         CausalConv1d(c, c, 3)])])
        self.mid_blocks = nn.ModuleList(nn.ModuleList([CausalResnetBlock1D(c, c, temb), transformers()])
                                        for _ in range(cfg.num_mid_blocks))
        self.up_blocks = nn.ModuleList([nn.ModuleList([CausalResnetBlock1D(2 * c, c, temb), transformers(),
                                                       CausalConv1d(c, c, 3)])])
        self.final_block = CausalBlock1D(c, c)
        self.final_proj = nn.Conv1d(c, cfg.out_channels, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        # CosyVoice's initialize_weights: Kaiming-normal (ReLU gain) convs and linears, zero biases.
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _attend(self, x: torch.Tensor, mask: torch.Tensor, blocks: nn.ModuleList, streaming: bool) -> torch.Tensor:
        allowed = chunk_mask(mask[:, 0].bool(), self.chunk_frames if streaming else 0)
        bias = ((~allowed).to(x.dtype) * -1.0e10)[:, None]
        h = x.transpose(1, 2)
        for block in blocks:
            h = block(h, bias)
        return h.transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, mu: torch.Tensor, t: torch.Tensor, spks: torch.Tensor,
                cond: torch.Tensor, *, streaming: bool = False) -> torch.Tensor:
        """``x, mu, cond [B, 80, T]``, ``mask [B, 1, T]`` (float), ``t [B]``, ``spks [B, 80]`` -> velocity
        ``[B, 80, T]`` (zero at masked frames)."""
        temb = self.time_mlp(sinusoidal_time(t, self.cfg.in_channels).to(x.dtype))
        h = torch.cat([x, mu, spks[..., None].expand(-1, -1, x.shape[-1]), cond], dim=1)
        resnet, blocks, down = self.down_blocks[0]
        h = self._attend(resnet(h, mask, temb), mask, blocks, streaming)
        skip = h
        h = down(h * mask)
        for resnet, blocks in self.mid_blocks:
            h = self._attend(resnet(h, mask, temb), mask, blocks, streaming)
        resnet, blocks, up = self.up_blocks[0]
        h = self._attend(resnet(torch.cat([h, skip], dim=1), mask, temb), mask, blocks, streaming)
        h = self.final_block(up(h * mask), mask)
        return self.final_proj(h * mask) * mask
