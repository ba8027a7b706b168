"""The codec's networks, vocos-style FeatureExtractor -> Backbone -> Head.

* :class:`CodecEncoder` (offline): waveform -> log-mel sub-frames stacked per code frame -> ConvNeXt -> vectors.
* :class:`CodecDecoder` (streaming): code vectors -> causal ConvNeXt backbone -> frame delay (lookahead) ->
  :class:`~aromni.tokenizers.speech.codec.head.StreamingISTFTHead`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aromni.tokenizers.speech.codec.config import CodecConfig
from aromni.tokenizers.speech.codec.head import StreamingISTFTHead
from aromni.tokenizers.speech.codec.modules import (
    ChannelLayerNorm,
    StreamingConvNeXtBlock,
    FrameDelay,
    StreamingConv1d,
)
from aromni.tokenizers.speech.mel import LogMel, MelConfig

# Fixed affine map of natural-log mel values (floor 1e-5 = -11.5) to roughly unit range before the first conv.
_LOGMEL_SHIFT, _LOGMEL_SCALE = 4.0, 0.25


class CodecEncoder(nn.Module):
    """``wav [B, F * hop] -> vectors [B, F, codebook_dim]`` (non-causal, receptive field of a few frames)."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.sub_hop = cfg.hop_length // cfg.enc_subframes
        self.mel = LogMel(MelConfig(sample_rate=cfg.sample_rate, n_fft=cfg.enc_n_fft, hop_length=self.sub_hop,
                                    n_mels=cfg.enc_n_mels, center=False))
        self.embed = StreamingConv1d(cfg.enc_n_mels * cfg.enc_subframes, cfg.enc_dim, cfg.enc_kernel, causal=False)
        self.blocks = nn.ModuleList(
            StreamingConvNeXtBlock(cfg.enc_dim, cfg.enc_kernel, 3.0, 1.0 / cfg.enc_layers, causal=False)
            for _ in range(cfg.enc_layers))
        self.norm = nn.LayerNorm(cfg.enc_dim, eps=1e-6)
        self.proj = nn.Linear(cfg.enc_dim, cfg.codebook_dim)

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, F * hop] -> stacked log-mel [B, n_mels * subframes, F]``; sub-frame windows are centred."""
        cfg, b = self.cfg, wav.shape[0]
        frames = wav.shape[-1] // cfg.hop_length
        extra = cfg.enc_n_fft - self.sub_hop
        x = F.pad(wav, (extra // 2, extra - extra // 2))
        m = (self.mel(x) + _LOGMEL_SHIFT) * _LOGMEL_SCALE  # [B, n_mels, F * subframes]
        m = m.reshape(b, cfg.enc_n_mels, frames, cfg.enc_subframes).permute(0, 1, 3, 2)
        return m.reshape(b, cfg.enc_n_mels * cfg.enc_subframes, frames)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.features(wav))
        for block in self.blocks:
            x = block(x)
        return self.proj(self.norm(x.transpose(1, 2)))  # [B, F, D]


class CodecDecoder(nn.Module):
    """``vectors [B, F, D] -> audio [B, (F - lookahead) * hop]`` (offline callers pad ``lookahead`` zero frames).

    Every module is causal over frames except the final :class:`FrameDelay`, which makes audio frame ``t`` come
    from the backbone step that has seen codes up to ``t + lookahead``.
    """

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.embed = StreamingConv1d(cfg.codebook_dim, cfg.dec_dim, cfg.embed_kernel, causal=True)
        self.norm = ChannelLayerNorm(cfg.dec_dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            StreamingConvNeXtBlock(cfg.dec_dim, cfg.dec_kernel, cfg.dec_mlp_ratio, 1.0 / cfg.dec_layers,
                                   causal=True)
            for _ in range(cfg.dec_layers))
        self.final_norm = ChannelLayerNorm(cfg.dec_dim, eps=1e-6)
        self.delay = FrameDelay(cfg.lookahead)
        self.head = StreamingISTFTHead(cfg.dec_dim, cfg.head_n_fft, cfg.head_hop, cfg.head_subframes,
                                       cfg.max_log_magnitude)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(vectors.transpose(1, 2)))  # [B, C, F]
        for block in self.blocks:
            x = block(x)
        return self.head(self.delay(self.final_norm(x)))
