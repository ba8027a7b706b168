"""CosyVoice2's ``UpsampleConformerEncoder`` (``cosyvoice/transformer/upsample_encoder.py``): token embeddings at
25 Hz -> hidden states at 50 Hz. Module and parameter names follow the released ``flow.pt`` (``encoder.*``).

Structure: ``embed`` (Linear + LayerNorm, scaled by sqrt(d), ESPnet relative positions) -> ``pre_lookahead_layer``
(a conv seeing 3 tokens ahead, then a causal conv, plus the residual) -> ``encoders`` (pre-norm conformer blocks:
rel-pos self-attention + FFN, no macaron, no conv module) -> ``up_layer`` (nearest x2, left pad 4, Conv1d k5) ->
``up_embed`` (a second linear input layer) -> ``up_encoders`` -> ``after_norm``.

Streaming mode (``streaming=True``) masks attention with static chunks (``static_chunk_size`` tokens, then that
times the stride in frames): a position sees every earlier chunk and its own chunk. Every other operator is
causal or sees at most ``pre_lookahead_len`` tokens ahead, so once a chunk is complete *and* its look-ahead
tokens are known, its frames never change again (see :func:`final_frames`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aromni.cosyvoice.flow.config import EncoderConfig

__all__ = ["UpsampleConformerEncoder", "chunk_mask", "final_frames", "pad_mask"]


def pad_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``lengths [B]`` -> ``[B, size]`` bool, True at valid positions."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def chunk_mask(valid: torch.Tensor, chunk: int) -> torch.Tensor:
    """Attention mask ``[B, T, T]`` (True: may attend): key ``j`` valid and, with ``chunk > 0``, in the query's
    chunk or an earlier one (``j < (i // chunk + 1) * chunk``); ``chunk == 0``: every valid key."""
    size = valid.shape[1]
    keys = valid[:, None, :].expand(-1, size, -1)
    if chunk <= 0:
        return keys
    pos = torch.arange(size, device=valid.device)
    return keys & (pos[None, :] < ((pos // chunk + 1) * chunk)[:, None])[None]


def final_frames(n_tokens: int, *, chunk: int = 25, lookahead: int = 3, ratio: int = 2, finalize: bool = False) -> int:
    """Mel frames of a streaming (chunk-masked) run on ``n_tokens`` tokens (prompt included) that no later token
    can change: whole chunks of the tokens whose look-ahead is known, times ``ratio``. ``finalize``: every frame."""
    if finalize:
        return n_tokens * ratio
    return (max(0, n_tokens - lookahead) // chunk) * chunk * ratio


class RelPositionalEncoding(nn.Module):
    """ESPnet's relative positional encoding (``EspnetRelPositionalEncoding``): ``x * sqrt(d)`` and the table
    ``[1, 2T-1, d]`` of relative positions ``T-1 .. -(T-1)`` (sin at even, cos at odd channels)."""

    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.d_model, self.xscale = d_model, math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)

    def table(self, size: int, like: torch.Tensor) -> torch.Tensor:
        """``[1, 2 * size - 1, d]`` (no dropout)."""
        rel = torch.arange(size - 1, -size, -1, dtype=torch.float32, device=like.device)[:, None]
        div = torch.exp(torch.arange(0, self.d_model, 2, dtype=torch.float32, device=like.device)
                        * -(math.log(10000.0) / self.d_model))
        pe = torch.zeros(max(0, 2 * size - 1), self.d_model, device=like.device)
        pe[:, 0::2] = torch.sin(rel * div)
        pe[:, 1::2] = torch.cos(rel * div)
        return pe[None].to(like.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dropout(x * self.xscale), self.dropout(self.table(x.shape[1], x))


class LinearInput(nn.Module):
    """``LinearNoSubsampling``: ``out`` = Linear + LayerNorm + Dropout, then the positional encoding."""

    def __init__(self, d_in: int, d_model: int, dropout: float, pos_dropout: float):
        super().__init__()
        self.out = nn.Sequential(nn.Linear(d_in, d_model), nn.LayerNorm(d_model, eps=1e-5), nn.Dropout(dropout))
        self.pos_enc = RelPositionalEncoding(d_model, pos_dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, d_in]`` -> ``(x [B, T, d], pos_emb [1, 2T-1, d])``."""
        return self.pos_enc(self.out(x))


class RelPositionAttention(nn.Module):
    """``RelPositionMultiHeadedAttention`` (Transformer-XL scores with biases ``pos_bias_u`` / ``pos_bias_v``)."""

    def __init__(self, heads: int, d_model: int, dropout: float):
        super().__init__()
        self.h, self.d_k = heads, d_model // heads
        self.linear_q = nn.Linear(d_model, d_model)
        self.linear_k = nn.Linear(d_model, d_model)
        self.linear_v = nn.Linear(d_model, d_model)
        self.linear_out = nn.Linear(d_model, d_model)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(heads, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        """``x [B, T, d]``, ``mask [B, T, T]`` (True: attend), ``pos_emb [1, 2T-1, d]`` -> ``[B, T, d]``."""
        b, t, _ = x.shape
        q = self.linear_q(x).view(b, t, self.h, self.d_k)
        k = self.linear_k(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(1, -1, self.h, self.d_k).transpose(1, 2)
        ac = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
        bd = torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))  # [B, h, T, 2T-1]
        # Column c of bd is relative position T-1-c; entry [i, j] needs position i - j, i.e. c = T-1-i+j.
        idx = (t - 1) - torch.arange(t, device=x.device)[:, None] + torch.arange(t, device=x.device)[None, :]
        bd = bd.gather(-1, idx.expand(b, self.h, t, t))
        scores = (ac + bd) / math.sqrt(self.d_k)
        blocked = ~mask[:, None]
        attn = torch.softmax(scores.masked_fill(blocked, -float("inf")), dim=-1).masked_fill(blocked, 0.0)
        out = torch.matmul(self.dropout(attn), v).transpose(1, 2).reshape(b, t, self.h * self.d_k)
        return self.linear_out(out)


class PositionwiseFeedForward(nn.Module):
    """``PositionwiseFeedForward``: ``w_2(dropout(swish(w_1(x))))``."""

    def __init__(self, d_model: int, units: int, dropout: float):
        super().__init__()
        self.w_1, self.w_2 = nn.Linear(d_model, units), nn.Linear(units, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(F.silu(self.w_1(x))))


class ConformerLayer(nn.Module):
    """``ConformerEncoderLayer`` as CosyVoice2 configures it: pre-norm self-attention and FFN (eps 1e-12)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.self_attn = RelPositionAttention(cfg.heads, cfg.d_model, cfg.attention_dropout)
        self.feed_forward = PositionwiseFeedForward(cfg.d_model, cfg.linear_units, cfg.dropout)
        self.norm_ff = nn.LayerNorm(cfg.d_model, eps=1e-12)
        self.norm_mha = nn.LayerNorm(cfg.d_model, eps=1e-12)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.norm_mha(x), mask, pos_emb))
        return x + self.dropout(self.feed_forward(self.norm_ff(x)))


class PreLookaheadLayer(nn.Module):
    """``conv1`` (kernel ``L + 1``, right-padded by ``L`` zeros: sees ``L`` tokens ahead), leaky ReLU, ``conv2``
    (kernel 3, causal), plus the input."""

    def __init__(self, channels: int, lookahead: int):
        super().__init__()
        self.lookahead = lookahead
        self.conv1 = nn.Conv1d(channels, channels, lookahead + 1)
        self.conv2 = nn.Conv1d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, C] -> [B, T, C]``; positions past the sequence count as zeros."""
        h = F.leaky_relu(self.conv1(F.pad(x.transpose(1, 2), (0, self.lookahead))))
        h = self.conv2(F.pad(h, (2, 0)))
        return h.transpose(1, 2) + x


class Upsample1D(nn.Module):
    """``Upsample1D``: nearest-neighbour repeat by ``stride``, left pad ``2 * stride``, Conv1d of kernel
    ``2 * stride + 1`` (causal)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(channels, channels, stride * 2 + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T] -> [B, C, stride * T]``."""
        x = F.interpolate(x, scale_factor=float(self.stride), mode="nearest")
        return self.conv(F.pad(x, (self.stride * 2, 0)))


class UpsampleConformerEncoder(nn.Module):
    """See the module docstring. Input ``xs [B, T, d]`` (token embeddings, zero at padded positions)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = LinearInput(d, d, cfg.dropout, cfg.positional_dropout)
        self.pre_lookahead_layer = PreLookaheadLayer(d, cfg.pre_lookahead_len)
        self.encoders = nn.ModuleList(ConformerLayer(cfg) for _ in range(cfg.num_blocks))
        self.up_layer = Upsample1D(d, cfg.upsample_stride)
        self.up_embed = LinearInput(d, d, cfg.dropout, cfg.positional_dropout)
        self.up_encoders = nn.ModuleList(ConformerLayer(cfg) for _ in range(cfg.num_up_blocks))
        self.after_norm = nn.LayerNorm(d, eps=1e-5)

    def forward(self, xs: torch.Tensor, lengths: torch.Tensor, *, streaming: bool = False,
                hold_back: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``xs [B, T, d]``, ``lengths [B]`` -> ``(h [B, stride * T', d], h_lengths [B])``.

        ``hold_back``: the last ``hold_back`` valid tokens of each row only serve as look-ahead context (CosyVoice2's
        ``context`` with ``finalize=False``): ``T' = T - hold_back`` and ``h_lengths = stride * (lengths -
        hold_back)``. ``streaming``: static chunk masks (see the module docstring)."""
        cfg = self.cfg
        valid = pad_mask(lengths, xs.shape[1])
        x, pos = self.embed(xs)
        # Zero the padded positions the look-ahead conv reads, so a padded row equals the same row alone.
        x = self.pre_lookahead_layer(x * valid[..., None].to(x.dtype))
        if hold_back:
            lengths = (lengths - hold_back).clamp(min=0)
            x = x[:, : max(0, x.shape[1] - hold_back)]
            valid = pad_mask(lengths, x.shape[1])
            pos = self.embed.pos_enc.dropout(self.embed.pos_enc.table(x.shape[1], x))
        mask = chunk_mask(valid, cfg.static_chunk_size if streaming else 0)
        for layer in self.encoders:
            x = layer(x, mask, pos)
        x = self.up_layer(x.transpose(1, 2)).transpose(1, 2)
        lengths = lengths * cfg.upsample_stride
        x, pos = self.up_embed(x)
        up_chunk = cfg.static_chunk_size * cfg.upsample_stride if streaming else 0
        mask = chunk_mask(pad_mask(lengths, x.shape[1]), up_chunk)
        for layer in self.up_encoders:
            x = layer(x, mask, pos)
        return self.after_norm(x), lengths
