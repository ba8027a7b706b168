"""Typed configuration of LlamaGen's VQ image tokenizer (``tokenizer/tokenizer_image/vq_model.py``), with
presets.

The first ten fields are LlamaGen's ``ModelArgs``, with its names and defaults. ``ch`` and
``num_res_blocks`` are arguments LlamaGen hard-codes in ``Encoder``/``Decoder`` (128 and 2). They are fields
here so that the CPU-sized ``toy`` model can exist, and their defaults keep the released checkpoints
loadable. ``image_size`` is what the
tokenizer protocol calls the image side. The network is fully convolutional, so the weights do not fix it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from aromni.errors import ConfigError
from aromni.utils.config import dataclass_from_dict
from aromni.utils.io import JSONValue

#: LlamaGen's ``Normalize`` is ``GroupNorm(32, C, eps=1e-6)``. The group count is hard-coded, so every width
#: must be a multiple of it.
NORM_GROUPS = 32


@dataclass
class LlamaGenVQConfig:
    """Architecture and VQ-loss settings of a LlamaGen VQ model.

    Attributes:
        codebook_size: number of codes (``quantize.embedding`` rows).
        codebook_embed_dim: width of a code vector (``quant_conv`` output channels).
        codebook_l2_norm: compare and emit L2-normalised vectors (LlamaGen: always on).
        codebook_show_usage: keep the ``quantize.codebook_used`` buffer (a window of recent codes; in the
            released state dicts).
        commit_loss_beta: weight of the commitment term ``mean((sg[z_q] - z)^2)``.
        entropy_loss_ratio: weight of the codebook entropy term (0 = off, LlamaGen's default).
        encoder_ch_mult / decoder_ch_mult: one width multiplier per level; ``len - 1`` stride-2 resamplings.
        z_channels: encoder output / decoder input channels.
        dropout_p: dropout inside the residual blocks.
        ch: base width (LlamaGen: 128, hard-coded).
        num_res_blocks: residual blocks per encoder level; the decoder has one more (LlamaGen: 2).
        image_size: side of the square images the tokenizer encodes (pixels).
    """

    codebook_size: int = 16384
    codebook_embed_dim: int = 8
    codebook_l2_norm: bool = True
    codebook_show_usage: bool = True
    commit_loss_beta: float = 0.25
    entropy_loss_ratio: float = 0.0
    encoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    z_channels: int = 256
    dropout_p: float = 0.0
    ch: int = 128
    num_res_blocks: int = 2
    image_size: int = 256

    def __post_init__(self) -> None:
        self.encoder_ch_mult = tuple(self.encoder_ch_mult)
        self.decoder_ch_mult = tuple(self.decoder_ch_mult)
        sizes = ("codebook_size", "codebook_embed_dim", "z_channels", "ch", "num_res_blocks", "image_size")
        for name in sizes:
            if not _positive_int(getattr(self, name)):
                raise ConfigError(f"llamagen vq config: {name} must be a positive integer, "
                                  f"got {getattr(self, name)!r}")
        for name in ("encoder_ch_mult", "decoder_ch_mult"):
            mult = getattr(self, name)
            if not mult or not all(_positive_int(m) for m in mult):
                raise ConfigError(f"llamagen vq config: {name} must be non-empty positive integers, "
                                  f"got {list(mult)}")
        if len(self.encoder_ch_mult) != len(self.decoder_ch_mult):
            # Otherwise the decoder upsamples by a different factor than the encoder downsampled.
            raise ConfigError(f"llamagen vq config: encoder_ch_mult {list(self.encoder_ch_mult)} and "
                              f"decoder_ch_mult {list(self.decoder_ch_mult)} have different lengths",
                              "both need one entry per level")
        for name in ("commit_loss_beta", "entropy_loss_ratio"):
            if not float(getattr(self, name)) >= 0.0:
                raise ConfigError(f"llamagen vq config: {name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= float(self.dropout_p) < 1.0:
            raise ConfigError(f"llamagen vq config: dropout_p must be in [0, 1), got {self.dropout_p}")
        if self.image_size % self.downsample_factor:
            raise ConfigError(f"llamagen vq config: image_size {self.image_size} is not divisible by the "
                              f"downsampling factor {self.downsample_factor}", "use a multiple of it")
        widths = sorted({self.ch * m for m in (*self.encoder_ch_mult, *self.decoder_ch_mult)})
        bad = [w for w in widths if w % NORM_GROUPS]
        if bad:
            raise ConfigError(f"llamagen vq config: widths {bad} are not multiples of {NORM_GROUPS} "
                              "(LlamaGen's GroupNorm groups)",
                              f"use a ch that is a multiple of {NORM_GROUPS}")

    @property
    def downsample_factor(self) -> int:
        """Pixels per code along a side: ``2 ** (levels - 1)`` (VQ-16: 16)."""
        return 2 ** (len(self.encoder_ch_mult) - 1)

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.downsample_factor
        return side, side

    def architecture(self) -> dict[str, JSONValue]:
        """The fields that decide the state dict's keys and shapes (what a preset is matched on)."""
        keys = ("codebook_size", "codebook_embed_dim", "codebook_show_usage", "encoder_ch_mult",
                "decoder_ch_mult", "z_channels", "ch", "num_res_blocks")
        d = self.to_dict()
        return {k: d[k] for k in keys}

    def to_dict(self) -> dict[str, JSONValue]:
        d = dataclasses.asdict(self)
        d["encoder_ch_mult"] = list(self.encoder_ch_mult)
        d["decoder_ch_mult"] = list(self.decoder_ch_mult)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> LlamaGenVQConfig:
        return dataclass_from_dict(cls, d, "llamagen vq config")

    def replace(self, **changes: object) -> LlamaGenVQConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **overrides: object) -> LlamaGenVQConfig:
        """``"VQ-16"`` or ``"VQ-8"`` (LlamaGen's ``VQ_models``), or ``"toy"`` (CPU-sized)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown llamagen vq preset {name!r}", f"one of {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})

    def preset_name(self) -> str | None:
        """The preset whose architecture (not image size or loss weights) this config has, else ``None``."""
        arch = self.architecture()
        return next((n for n in PRESETS if LlamaGenVQConfig.preset(n).architecture() == arch), None)


def _positive_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


#: ``VQ-16``: LlamaGen's released tokenizer (``vq_ds16_t2i.pt``/``vq_ds16_c2i.pt``; 16384 x 8 codes, 16 px per
#: code). ``VQ-8``: LlamaGen's ds-8 variant. ``toy``: omnivivo.md §4.1's CPU analogue, 64 px -> 8x8 codes.
PRESETS: dict[str, dict[str, JSONValue]] = {
    "VQ-16": {},
    "VQ-8": {"encoder_ch_mult": [1, 2, 2, 4], "decoder_ch_mult": [1, 2, 2, 4]},
    "toy": {"ch": 32, "encoder_ch_mult": [1, 2, 2, 4], "decoder_ch_mult": [1, 2, 2, 4], "z_channels": 64,
            "codebook_size": 256, "codebook_embed_dim": 8, "image_size": 64},
}
