"""Typed configuration of OmniVIVO's speech path: the speech branch, LoRA, the speech rows' RoPE and the speech
length rules (omnivivo.md §4.2-§4.5).

Defaults are the paper's where it gives one (8-layer branch, LoRA r = 16 / alpha = 16 on every projection of
the blocks) and CosyVoice2's where OmniVIVO is silent (length rules 2x / 20x text tokens). Choices the paper does
not make, each documented on its field: the tap layer, the branch width and heads, the speech rows' RoPE, the
branch's dropout.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from aromni.errors import ConfigError
from aromni.omnivivo.lora import LoRAConfig
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.utils.config import dataclass_from_dict
from aromni.utils.io import JSONValue

#: The speech rows' RoPE tables in the backbone (``VivoConfig.speech_rope``).
SPEECH_ROPE = ("zero_prefix", "real_prefix")


@dataclass
class VivoConfig:
    """OmniVIVO's speech path on a frozen t2i backbone.

    Attributes:
        speech_vocab: ``K``, the speech tokenizer's codebook size; ``EOS = K``, so the speech embedding and the
            head have ``K + 1`` rows.
        branch_layers: ``N`` transformer blocks of the speech branch (paper: 8; the toy world: 2).
        branch_dim: branch width; ``None`` = the backbone's ``dim`` (our choice: the paper's 225 M trainable
            parameters match 8 blocks of width 1280, omnivivo.md §4.7). Another width adds an input projection.
        branch_heads: branch attention heads; ``None`` = the backbone's ``n_head``.
        branch_dropout: dropout inside the branch blocks (train mode only). Paper silent; 0 as in CosyVoice2's
            Qwen2 LM.
        tap_layer: index of the backbone block whose OUTPUT feeds the branch (negative counts from the end). The
            default ``-1`` is the last block's output BEFORE the backbone's final ``norm`` (our choice, §4.2: the
            final norm belongs to the frozen image head).
        speech_rope: RoPE table of the speech rows in the backbone. ``"zero_prefix"``: LlamaGen's own 2-D table
            with the zero caption prefix (faithful: the speech rows see the backbone exactly as image rows do;
            past ``block_size`` positions it continues the raster with more rows), so speech queries reach the
            text only through values (§1.4). ``"real_prefix"`` (recommended, §4.4 option A): a 1-D table with
            real rotations on the prefix too, so LoRA can learn content-based attention from speech to text.
        lora: LoRA on the backbone's projections (``wqkv, wo, w1, w2, w3``; the paper's r = 16, alpha = 16).
            ``None``: no adapters, so the branch reads the frozen backbone as it is (the paper's Table 1
            "w/o LoRA" TTS baseline).
        max_speech_len: most speech codes per utterance (EOS excluded): sizes the RoPE tables and the caches.
        min_len_ratio, max_len_ratio: per prompt, EOS is masked until ``int(min_len_ratio * n_text)`` codes and
            decoding stops at ``int(max_len_ratio * n_text)`` codes (capped by ``max_speech_len``), with
            ``n_text`` the prompt's valid caption tokens (T5's EOS included). CosyVoice2's 2 / 20 per text token;
            re-tune for T5 tokens and the tokenizer's frame rate.
    """

    speech_vocab: int
    branch_layers: int = 8
    branch_dim: int | None = None
    branch_heads: int | None = None
    branch_dropout: float = 0.0
    tap_layer: int = -1
    speech_rope: str = "real_prefix"
    lora: LoRAConfig | None = field(default_factory=LoRAConfig)
    max_speech_len: int = 750
    min_len_ratio: float = 2.0
    max_len_ratio: float = 20.0

    def __post_init__(self) -> None:
        for name in ("speech_vocab", "branch_layers", "max_speech_len"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("branch_dim", "branch_heads"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        _check_int("tap_layer", self.tap_layer, minimum=None)
        p = self.branch_dropout
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ConfigError(f"vivo config: branch_dropout must be a probability in [0, 1), got {p!r}")
        if self.speech_rope not in SPEECH_ROPE:
            raise ConfigError(f"vivo config: unknown speech_rope {self.speech_rope!r}",
                              f"one of {', '.join(SPEECH_ROPE)} (real_prefix lets speech attend to text)")
        if self.lora is not None and not isinstance(self.lora, LoRAConfig):
            raise ConfigError(f"vivo config: lora must be a LoRAConfig or None, got {type(self.lora).__name__}",
                              "lora: {r: 16, alpha: 16}, or lora: null for no adapters")
        for name in ("min_len_ratio", "max_len_ratio"):
            r = getattr(self, name)
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r < 0:
                raise ConfigError(f"vivo config: {name} must be a non-negative number, got {r!r}")
        if self.min_len_ratio > self.max_len_ratio:
            raise ConfigError(f"vivo config: min_len_ratio {self.min_len_ratio} exceeds max_len_ratio "
                              f"{self.max_len_ratio}", "EOS would never be allowed before the length cap")

    @property
    def eos(self) -> int:
        """The speech EOS id (``speech_vocab``)."""
        return self.speech_vocab

    @property
    def n_speech_ids(self) -> int:
        """Rows of the speech embedding and the speech head: ``K`` codes plus EOS."""
        return self.speech_vocab + 1

    def length_limits(self, n_text: int) -> tuple[int, int]:
        """``(min_len, max_len)`` in speech codes for a prompt of ``n_text`` valid caption tokens (CosyVoice2's
        ``int(ratio * text_len)``; ``max_len`` capped at ``max_speech_len``, ``min_len`` at ``max_len``)."""
        max_len = min(int(self.max_len_ratio * n_text), self.max_speech_len)
        return min(int(self.min_len_ratio * n_text), max_len), max_len

    def tap_index(self, n_layer: int) -> int:
        """The tap layer as an index in ``0 .. n_layer - 1``."""
        if not -n_layer <= self.tap_layer < n_layer:
            raise ConfigError(f"vivo config: tap_layer {self.tap_layer} is outside a backbone of {n_layer} blocks",
                              f"use -1 (the last block) or an index in [{-n_layer}, {n_layer})")
        return self.tap_layer % n_layer

    def branch_config(self, backbone: T2IConfig) -> T2IConfig:
        """The block configuration of the branch: the backbone's, with the branch's depth, width, heads and
        dropout (the caption fields are unused by the blocks)."""
        self.tap_index(backbone.n_layer)
        heads = self.branch_heads or backbone.n_head
        p = float(self.branch_dropout)
        return backbone.replace(n_layer=self.branch_layers, dim=self.branch_dim or backbone.dim, n_head=heads,
                                n_kv_head=heads, token_dropout_p=0.0, resid_dropout_p=p, ffn_dropout_p=p,
                                attn_dropout_p=p)

    def to_dict(self) -> dict[str, JSONValue]:
        d = dataclasses.asdict(self)
        if self.lora is not None:
            d["lora"]["target_modules"] = list(self.lora.target_modules)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, JSONValue]) -> VivoConfig:
        return dataclass_from_dict(cls, d, "vivo config")

    def replace(self, **changes: JSONValue) -> VivoConfig:
        return dataclass_from_dict(type(self), {**self.to_dict(), **changes}, "vivo config")


def _check_int(name: str, value: object, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        need = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise ConfigError(f"vivo config: {name} must be {need}, got {value!r}")
