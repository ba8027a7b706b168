"""Typed configuration of the WavTokenizer architecture, named presets, and reading the official yaml.

Hyper-parameters the official models never vary (SEANet: one residual layer per stage, dilation 1, conv
shortcut, ELU, reflect padding; pos_net: GroupNorm with 32 groups, eps 1e-6; ISTFT "same" padding) are fixed
in the modules and not exposed here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from aromni.errors import CheckpointError, ConfigError
from aromni.utils.config import dataclass_from_dict
from aromni.utils.io import JSONValue

#: GroupNorm groups in the Vocos pos_net (fixed in the official code).
POS_NET_GROUPS = 32


@dataclass
class WavTokenizerConfig:
    """Architecture of a WavTokenizer (SEANet encoder + 1 codebook + Vocos backbone + ISTFT head).

    Attributes:
        sample_rate: waveform rate in Hz.
        strides: encoder downsampling strides in the order the encoder applies them (the official yaml lists
            them reversed as ``dowmsamples``); their product is the hop length.
        n_filters: channels of the first encoder conv; doubled by every strided conv.
        dimension: encoder output / codebook vector width.
        kernel_size, last_kernel_size, residual_kernel_size: SEANet conv kernels.
        compress: channel reduction inside the SEANet residual blocks.
        lstm_layers: layers of the unidirectional LSTM (with skip) after the last stage.
        codebook_size: entries of the single codebook.
        backbone_dim: Vocos backbone width.
        intermediate_dim: ConvNeXt hidden width.
        num_layers: ConvNeXt blocks.
        adanorm_num_embeddings: rows of the AdaLayerNorm scale/shift tables (valid ``bandwidth_id`` values).
        n_fft: ISTFT size (= window length); the head predicts ``n_fft + 2`` channels.
    """

    sample_rate: int = 24000
    strides: tuple[int, ...] = (4, 5, 5, 6)
    n_filters: int = 32
    dimension: int = 512
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    compress: int = 2
    lstm_layers: int = 2
    codebook_size: int = 4096
    backbone_dim: int = 768
    intermediate_dim: int = 2304
    num_layers: int = 12
    adanorm_num_embeddings: int = 4
    n_fft: int = 2400

    def __post_init__(self) -> None:
        self.strides = tuple(int(s) for s in self.strides)
        if not self.strides or any(s <= 0 for s in self.strides):
            raise ConfigError(f"wavtokenizer config: strides must be positive, got {list(self.strides)}")
        for name in ("sample_rate", "n_filters", "dimension", "kernel_size", "last_kernel_size",
                     "residual_kernel_size", "compress", "lstm_layers", "codebook_size", "backbone_dim",
                     "intermediate_dim", "num_layers", "adanorm_num_embeddings", "n_fft"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"wavtokenizer config: {name} must be positive, got {getattr(self, name)}")
        if self.n_filters % self.compress:
            raise ConfigError(f"wavtokenizer config: n_filters {self.n_filters} not divisible by compress {self.compress}")
        if self.backbone_dim % POS_NET_GROUPS:
            raise ConfigError(f"wavtokenizer config: backbone_dim {self.backbone_dim} must be a multiple of "
                              f"{POS_NET_GROUPS} (pos_net GroupNorm)")
        hop = self.hop_length
        # "same" ISTFT trims (n_fft - hop) / 2 per side; the window envelope must be non-zero everywhere kept.
        if self.n_fft <= hop or (self.n_fft - hop) % 2:
            raise ConfigError(f"wavtokenizer config: n_fft {self.n_fft} must exceed hop {hop} by an even number",
                              "the official models use n_fft = 4 * hop")

    @property
    def hop_length(self) -> int:
        return math.prod(self.strides)

    def to_dict(self) -> dict[str, JSONValue]:
        d = dataclasses.asdict(self)
        d["strides"] = list(self.strides)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> WavTokenizerConfig:
        return dataclass_from_dict(cls, d, "wavtokenizer config")

    @classmethod
    def preset(cls, name: str, **overrides: object) -> WavTokenizerConfig:
        if name not in PRESETS:
            raise ConfigError(f"unknown wavtokenizer preset {name!r}", f"one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


#: ``40hz`` = small/large-600-24k-4096 (AR-Omni's), ``75hz`` = *-320-24k-4096; ``tiny*`` for tests.
PRESETS: dict[str, dict[str, Any]] = {
    "40hz": dict(strides=(4, 5, 5, 6), n_fft=2400),
    "75hz": dict(strides=(2, 4, 5, 8), n_fft=1280),
    "tiny": dict(sample_rate=8000, strides=(2, 4), n_filters=4, dimension=16, codebook_size=64,
                 backbone_dim=64, intermediate_dim=96, num_layers=2, n_fft=32),
    # hop 30 with an odd stride, for the frame-count edge cases.
    "tiny-odd": dict(sample_rate=8000, strides=(2, 3, 5), n_filters=2, dimension=8, codebook_size=16,
                     backbone_dim=32, intermediate_dim=48, num_layers=1, n_fft=120),
}


def _section(init_args: Mapping[str, Any], name: str, cls_hint: str, source: str) -> Mapping[str, Any]:
    block = init_args.get(name)
    if not isinstance(block, Mapping) or not isinstance(block.get("init_args"), Mapping):
        raise CheckpointError(f"{source}: model.init_args.{name}.init_args is missing",
                              "pass the WavTokenizer training yaml that belongs to the checkpoint")
    path = str(block.get("class_path", ""))
    if cls_hint not in path:
        raise CheckpointError(f"{source}: model.init_args.{name} is {path!r}, expected a {cls_hint}")
    return block["init_args"]


def config_from_official_yaml(path: str | Path) -> WavTokenizerConfig:
    """Read the architecture from an official WavTokenizer yaml (``model.init_args.{feature_extractor,
    backbone, head}``, see the official-formats reference §A.2)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file", "pass the WavTokenizer config yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        init_args = raw["model"]["init_args"]
    except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: not a WavTokenizer yaml ({type(e).__name__}: {e})") from None
    src = str(path)
    fe = _section(init_args, "feature_extractor", "EncodecFeatures", src)
    bb = _section(init_args, "backbone", "VocosBackbone", src)
    hd = _section(init_args, "head", "ISTFTHead", src)
    try:
        if int(fe.get("num_quantizers", 1)) != 1:
            raise CheckpointError(f"{src}: num_quantizers {fe['num_quantizers']} is not supported (only 1)")
        if str(hd.get("padding", "same")) != "same":
            raise CheckpointError(f"{src}: ISTFT padding {hd['padding']!r} is not supported (only 'same')")
        if bb.get("adanorm_num_embeddings") is None:
            raise CheckpointError(f"{src}: backbone without adanorm_num_embeddings is not supported")
        cfg = WavTokenizerConfig(
            sample_rate=int(init_args.get("sample_rate", 24000)),
            strides=tuple(reversed([int(s) for s in fe["dowmsamples"]])),
            dimension=int(bb["input_channels"]), codebook_size=int(fe["vq_bins"]),
            backbone_dim=int(bb["dim"]), intermediate_dim=int(bb["intermediate_dim"]),
            num_layers=int(bb["num_layers"]), adanorm_num_embeddings=int(bb["adanorm_num_embeddings"]),
            n_fft=int(hd["n_fft"]))
        head_dim, head_hop = int(hd["dim"]), int(hd["hop_length"])
    except KeyError as e:
        raise CheckpointError(f"{src}: field {e} is missing from the WavTokenizer yaml") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{src}: malformed WavTokenizer yaml ({e})") from None
    if head_dim != cfg.backbone_dim:
        raise CheckpointError(f"{src}: head.dim {head_dim} != backbone.dim {cfg.backbone_dim}")
    if head_hop != cfg.hop_length:
        raise CheckpointError(f"{src}: head.hop_length {head_hop} != product of dowmsamples {cfg.hop_length}")
    return cfg
