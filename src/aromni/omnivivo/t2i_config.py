"""Typed configuration of the LlamaGen-compatible text-to-image backbone, with the released presets.

Field names and defaults follow LlamaGen's ``ModelArgs`` (``autoregressive/models/gpt.py``) for the t2i models
(``../shared/reference/omnivivo.md`` §1.1), so a value read off an official run maps one to one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from aromni.errors import ConfigError
from aromni.utils.config import dataclass_from_dict
from aromni.utils.io import JSONValue


def find_multiple(n: int, k: int) -> int:
    """The smallest multiple of ``k`` that is ``>= n`` (LlamaGen's rounding of the FFN width)."""
    return n if n % k == 0 else n + k - (n % k)


def ffn_hidden(dim: int, multiple_of: int = 256, ffn_dim_multiplier: float | None = None) -> int:
    """SwiGLU width: ``find_multiple(int(2 * 4 * dim / 3) [* multiplier], multiple_of)``; 3584 for dim 1280."""
    hidden = int(2 * 4 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return find_multiple(hidden, multiple_of)


@dataclass
class T2IConfig:
    """Architecture of the text-to-image backbone.

    Attributes:
        dim: model width.
        n_layer: transformer blocks.
        n_head: query heads; ``head_dim = dim // n_head`` (must be a multiple of 4 for the 2-D RoPE).
        n_kv_head: key/value heads; ``None`` means ``n_head`` (the released models have no GQA).
        multiple_of, ffn_dim_multiplier: SwiGLU width rule (:func:`ffn_hidden`).
        rope_base: RoPE base.
        norm_eps: RMSNorm epsilon.
        vocab_size: image codes (rows of ``tok_embeddings`` and ``output``).
        cls_token_num: caption prefix length (T5 tokens; 120 for the released models).
        caption_dim: width of the caption features (2048 = flan-t5-xl ``d_model``).
        block_size: image tokens per image, a square ``grid * grid`` (256 at 256 px, 1024 at 512 px).
        class_dropout_prob: probability of replacing a whole caption by ``uncond_embedding`` in training (CFG).
        token_dropout_p, resid_dropout_p, ffn_dropout_p, attn_dropout_p: dropout rates (active in train mode).
        initializer_range: std of the normal init of linear and embedding weights.
    """

    dim: int
    n_layer: int
    n_head: int
    n_kv_head: int | None = None
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    vocab_size: int = 16384
    cls_token_num: int = 120
    caption_dim: int = 2048
    block_size: int = 256
    class_dropout_prob: float = 0.1
    token_dropout_p: float = 0.1
    resid_dropout_p: float = 0.1
    ffn_dropout_p: float = 0.1
    attn_dropout_p: float = 0.0
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        for name in ("dim", "n_layer", "n_head", "n_kv_head", "multiple_of", "vocab_size", "cls_token_num",
                     "caption_dim", "block_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"t2i config: {name} must be a positive integer, got {value!r}")
        for name in ("rope_base", "norm_eps", "initializer_range"):
            _check_positive(name, getattr(self, name))
        if self.ffn_dim_multiplier is not None:
            _check_positive("ffn_dim_multiplier", self.ffn_dim_multiplier)
        for name in ("class_dropout_prob", "token_dropout_p", "resid_dropout_p", "ffn_dropout_p",
                     "attn_dropout_p"):
            p = getattr(self, name)
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
                raise ConfigError(f"t2i config: {name} must be a probability in [0, 1), got {p!r}")
        self._check_shapes()

    def _check_shapes(self) -> None:
        if self.dim % self.n_head:
            raise ConfigError(f"t2i config: dim {self.dim} is not divisible by n_head {self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ConfigError(f"t2i config: n_head {self.n_head} is not a multiple of n_kv_head {self.n_kv_head}")
        if self.head_dim % 4:
            # 2-D RoPE gives half of the rotary pairs to the row index and half to the column index.
            raise ConfigError(f"t2i config: head_dim {self.head_dim} (dim / n_head) must be a multiple of 4",
                              "2-D RoPE splits the rotary pairs between rows and columns")
        if math.isqrt(self.block_size) ** 2 != self.block_size:
            raise ConfigError(f"t2i config: block_size {self.block_size} is not a square grid",
                              "use grid * grid image tokens, e.g. 256 (16x16) or 1024 (32x32)")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    @property
    def grid_size(self) -> int:
        """Tokens per image side (``sqrt(block_size)``)."""
        return math.isqrt(self.block_size)

    @property
    def ffn_dim(self) -> int:
        return ffn_hidden(self.dim, self.multiple_of, self.ffn_dim_multiplier)

    @property
    def max_seq_len(self) -> int:
        """Positions the RoPE table covers: the caption prefix plus one image."""
        return self.cls_token_num + self.block_size

    def to_dict(self) -> dict[str, JSONValue]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, JSONValue]) -> T2IConfig:
        return dataclass_from_dict(cls, d, "t2i config")

    def replace(self, **changes: JSONValue) -> T2IConfig:
        return dataclass_from_dict(type(self), {**self.to_dict(), **changes}, "t2i config")

    @classmethod
    def preset(cls, name: str, **overrides: JSONValue) -> T2IConfig:
        """A named architecture (``GPT-B``, ``GPT-L``, ``GPT-XL``, ``GPT-XXL``, ``toy``) with ``overrides``."""
        if name not in PRESETS:
            raise ConfigError(f"unknown t2i preset {name!r}", f"one of {', '.join(PRESETS)}")
        return dataclass_from_dict(cls, {**PRESETS[name], **overrides}, "t2i config")


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"t2i config: {name} must be a positive finite number, got {value!r}")


#: LlamaGen's sizes (gpt.py ``GPT_B`` ... ``GPT_XXL``) with the t2i defaults of ``T2IConfig`` (cls_token_num 120,
#: caption_dim 2048, vocab 16384, block 256); the released t2i weights are GPT-XL. ``toy`` is the CPU analogue of
#: omnivivo.md §4.1 (1,139,840 parameters).
PRESETS: dict[str, dict[str, JSONValue]] = {
    "GPT-B": {"n_layer": 12, "n_head": 12, "dim": 768},
    "GPT-L": {"n_layer": 24, "n_head": 16, "dim": 1024},
    "GPT-XL": {"n_layer": 36, "n_head": 20, "dim": 1280},
    "GPT-XXL": {"n_layer": 48, "n_head": 24, "dim": 1536},
    "toy": {"n_layer": 4, "n_head": 4, "dim": 128, "cls_token_num": 16, "caption_dim": 64, "vocab_size": 256,
            "block_size": 64},
}
