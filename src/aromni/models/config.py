"""Typed configuration of the Chameleon-architecture decoder, with named presets."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping

from aromni.errors import ConfigError
from aromni.utils.config import dataclass_from_dict
from aromni.utils.io import JSONValue


def ffn_hidden_dim(dim: int, multiple_of: int = 256, ffn_dim_multiplier: float | None = None) -> int:
    """Chameleon/LLaMA SwiGLU width: ``multiple_of * ceil(int(2/3 * 4 * dim * mult) / multiple_of)``.

    For the 7B model (dim 4096, multiple_of 256) this is 11008.
    """
    hidden = int(2 * 4 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


@dataclass
class DecoderConfig:
    """Architecture of the decoder (no tokenizer or vocabulary-layout facts beyond ``vocab_size``).

    Attributes:
        vocab_size: rows of the token embedding and of the LM head.
        dim: model width.
        n_layers: transformer blocks.
        n_heads: query heads; ``head_dim = dim // n_heads``.
        n_kv_heads: key/value heads (GQA); ``None`` means ``n_heads``.
        ffn_dim: SwiGLU hidden width; ``None`` derives it with :func:`ffn_hidden_dim`.
        norm_eps: RMSNorm epsilon.
        qk_norm_eps: epsilon of the per-head LayerNorm on q and k (Chameleon hard-codes 1e-5).
        rope_theta: RoPE base.
        qk_norm: per-head LayerNorm over ``head_dim`` on q and k, applied before RoPE (Chameleon).
        swin_norm: residual-post-norm (paper eq. 5-6): ``h = x + Norm(Attn(x))`` instead of pre-norm.
        max_seq_len: longest sequence the RoPE tables and caches are sized for by default.
        tie_embeddings: share the embedding matrix with the LM head (Chameleon does not).
    """

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int | None = None
    ffn_dim: int | None = None
    multiple_of: int = 256
    norm_eps: float = 1e-5
    qk_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    qk_norm: bool = True
    swin_norm: bool = False
    max_seq_len: int = 4096
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.ffn_dim is None:
            self.ffn_dim = ffn_hidden_dim(self.dim, self.multiple_of)
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"decoder config: {name} must be positive, got {getattr(self, name)}")
        for name in ("norm_eps", "qk_norm_eps", "rope_theta"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"decoder config: {name} must be a positive finite number, got {getattr(self, name)}")
        if self.dim % self.n_heads:
            raise ConfigError(f"decoder config: dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"decoder config: n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"decoder config: head_dim {self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict[str, JSONValue]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, JSONValue]) -> DecoderConfig:
        return dataclass_from_dict(cls, d, "decoder config")

    def replace(self, **changes: object) -> DecoderConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **overrides: object) -> DecoderConfig:
        if name not in PRESETS:
            raise ConfigError(f"unknown decoder preset {name!r}", f"one of {', '.join(PRESETS)}")
        return dataclass_from_dict(cls, {**PRESETS[name], **overrides}, "decoder config")

    def num_params(self) -> int:
        """Parameter count implied by the config (embedding and head counted separately unless tied)."""
        d, h, kv, hd, f = self.dim, self.n_heads, self.n_kv_heads, self.head_dim, self.ffn_dim
        attn = d * (h + 2 * kv) * hd + h * hd * d + (2 * (h + kv) * hd if self.qk_norm else 0)
        block = attn + 3 * d * f + 2 * d
        emb = self.vocab_size * d
        return self.n_layers * block + d + emb + (0 if self.tie_embeddings else emb)


#: Named architectures. ``7b`` is Chameleon/Anole/AR-Omni-7B; the others are for tests, benchmarks and toys.
PRESETS: dict[str, dict[str, JSONValue]] = {
    "7b": dict(vocab_size=65536, dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, ffn_dim=11008,
               norm_eps=1e-5, rope_theta=10000.0, qk_norm=True, swin_norm=False, max_seq_len=4096),
    "tiny": dict(vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=176, max_seq_len=256),
    "100m": dict(vocab_size=32768, dim=768, n_layers=12, n_heads=12, n_kv_heads=12, ffn_dim=2048, max_seq_len=2048),
}
