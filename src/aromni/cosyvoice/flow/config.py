"""Typed configuration of the token-to-mel flow model (CosyVoice2's ``CausalMaskedDiffWithXvec``).

Two presets: ``cosyvoice2`` (the released ``flow.pt``: ``cosyvoice2.yaml`` of CosyVoice's
``examples/libritts/cosyvoice2/conf``) and ``toy`` (the same structure, small enough to train on a CPU in minutes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from aromni.errors import ConfigError
from aromni.utils.config import dataclass_from_dict
from aromni.utils.io import JSONValue

__all__ = ["CFMConfig", "EncoderConfig", "EstimatorConfig", "FlowConfig"]


@dataclass
class EncoderConfig:
    """``UpsampleConformerEncoder``: linear input layer + rel-pos conformer blocks (pre-norm, no macaron, no conv
    module), a pre-look-ahead layer, ``num_blocks`` blocks, x2 upsampling, ``num_up_blocks`` blocks, LayerNorm."""

    d_model: int = 512
    heads: int = 8
    linear_units: int = 2048
    num_blocks: int = 6
    num_up_blocks: int = 4
    pre_lookahead_len: int = 3
    dropout: float = 0.1  # residual / feed-forward dropout (dropout_rate)
    positional_dropout: float = 0.1
    attention_dropout: float = 0.1
    static_chunk_size: int = 25  # tokens per chunk of the streaming (chunk-masked) mode
    upsample_stride: int = 2  # token_mel_ratio

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ConfigError(f"flow encoder: d_model {self.d_model} is not a multiple of heads {self.heads}")
        if min(self.d_model, self.heads, self.linear_units, self.static_chunk_size, self.upsample_stride) < 1:
            raise ConfigError("flow encoder: sizes must be positive")
        if self.num_blocks < 0 or self.num_up_blocks < 0 or self.pre_lookahead_len < 0:
            raise ConfigError("flow encoder: block counts and pre_lookahead_len must be >= 0")


@dataclass
class EstimatorConfig:
    """``CausalConditionalDecoder``: the causal 1-D U-Net velocity estimator (one level: ``channels=[c]``)."""

    in_channels: int = 320  # [x, mu, spk, cond], 80 each
    out_channels: int = 80
    channels: int = 256
    attention_head_dim: int = 64
    num_heads: int = 8
    n_blocks: int = 4  # transformer blocks per U-Net block
    num_mid_blocks: int = 12
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if min(self.in_channels, self.out_channels, self.channels, self.attention_head_dim, self.num_heads) < 1:
            raise ConfigError("flow estimator: sizes must be positive")
        if self.in_channels % 2:
            raise ConfigError(f"flow estimator: in_channels {self.in_channels} must be even",
                              "the sinusoidal time embedding has sin and cos halves")
        if self.n_blocks < 0 or self.num_mid_blocks < 0:
            raise ConfigError("flow estimator: block counts must be >= 0")

    @property
    def time_embed_dim(self) -> int:
        return self.channels * 4


@dataclass
class CFMConfig:
    """``cfm_params`` of ``cosyvoice2.yaml`` (the ``reg_loss_type`` there is unused: the loss is MSE)."""

    sigma_min: float = 1e-6
    training_cfg_rate: float = 0.2
    inference_cfg_rate: float = 0.7
    n_timesteps: int = 10
    noise_seed: int = 0  # seed of the fixed noise tensor (torch.manual_seed(0); randn(1, 80, 15000))
    noise_frames: int = 15000  # 300 s at 50 frames/s

    def __post_init__(self) -> None:
        if not 0 <= self.training_cfg_rate <= 1 or self.sigma_min < 0 or self.n_timesteps < 1 or self.noise_frames < 1:
            raise ConfigError("flow cfm: need 0 <= training_cfg_rate <= 1, sigma_min >= 0, n_timesteps >= 1")


@dataclass
class FlowConfig:
    """The whole token-to-mel model. ``vocab_size`` tokens at 25 Hz -> ``n_mels`` mel bins at 50 Hz."""

    vocab_size: int = 6561
    n_mels: int = 80
    spk_embed_dim: int = 192
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    cfm: CFMConfig = field(default_factory=CFMConfig)
    prompt_prob: float = 0.5  # training: p of conditioning a sample on its own first frames
    prompt_max_ratio: float = 0.3  # ... on at most this share of them
    streaming_prob: float = 0.5  # training: p of a batch using the static chunk masks

    def __post_init__(self) -> None:
        if self.vocab_size < 1 or self.n_mels < 1 or self.spk_embed_dim < 1:
            raise ConfigError("flow config: vocab_size, n_mels and spk_embed_dim must be positive")
        if self.estimator.in_channels != 4 * self.n_mels or self.estimator.out_channels != self.n_mels:
            raise ConfigError(f"flow config: the estimator takes [x, mu, spk, cond] = {4 * self.n_mels} channels "
                              f"and returns {self.n_mels}, got {self.estimator.in_channels} -> "
                              f"{self.estimator.out_channels}")
        for name in ("prompt_prob", "prompt_max_ratio", "streaming_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"flow config: {name} must lie in [0, 1]")

    @property
    def token_mel_ratio(self) -> int:
        return self.encoder.upsample_stride

    @classmethod
    def preset(cls, name: str, **overrides: JSONValue) -> FlowConfig:
        """``cosyvoice2`` (the released sizes) or ``toy``, with nested ``overrides`` (``{"encoder": {...}}``)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown flow preset {name!r}", f"choose one of {sorted(PRESETS)}")
        return cls.from_dict(_merge(PRESETS[name], overrides))

    def to_dict(self) -> dict[str, JSONValue]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> FlowConfig:
        return dataclass_from_dict(cls, d, "flow config")


def _merge(base: Mapping[str, JSONValue], top: Mapping[str, JSONValue]) -> dict[str, JSONValue]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


PRESETS: dict[str, dict[str, JSONValue]] = {
    "cosyvoice2": {},
    # Same structure; d 128, 2 + 2 conformer blocks, a 128-channel estimator with 2 mid blocks of 1 transformer
    # block. No dropout: the toy trains for minutes, far from over-fitting.
    "toy": {
        "vocab_size": 81,
        "encoder": {"d_model": 128, "heads": 4, "linear_units": 512, "num_blocks": 2, "num_up_blocks": 2,
                    "dropout": 0.0, "positional_dropout": 0.0, "attention_dropout": 0.0},
        "estimator": {"channels": 128, "attention_head_dim": 32, "num_heads": 4, "n_blocks": 1, "num_mid_blocks": 2},
    },
}
