"""Typed configuration of the streaming codec, with named presets.

The codec is fixed by these fields; ``config.json`` of a saved codec stores them verbatim. Presets:

* ``tiny``: a few hundred k parameters, for tests and benchmarks;
* ``toy``: sized for the toy world (16 kHz espeak-ng speech, ~30-40 minutes of training on 2 CPU cores).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

from aromni.errors import ConfigError
from aromni.utils.config import dataclass_from_dict
from aromni.utils.io import JSONValue


@dataclass(frozen=True)
class CodecConfig:
    """Architecture of :class:`~aromni.tokenizers.speech.codec.model.StreamingCodec`.

    One code per ``hop_length`` samples (16 kHz / 400 = 40 codes per second by default).
    """

    sample_rate: int = 16000
    hop_length: int = 400
    codebook_size: int = 1024
    codebook_dim: int = 64  # a low-dimensional codebook keeps more codes alive (nearest-neighbour in 64-D)
    # Encoder (offline, non-causal, finite receptive field): log-mel of `enc_subframes` sub-frames per code frame,
    # stacked as channels, then ConvNeXt blocks at the code rate.
    enc_subframes: int = 4
    enc_n_fft: int = 512
    enc_n_mels: int = 64
    enc_dim: int = 256
    enc_layers: int = 4
    enc_kernel: int = 5
    # Decoder (streaming): causal ConvNeXt backbone at the code rate, then an ISTFT head.
    dec_dim: int = 256
    dec_layers: int = 8
    dec_kernel: int = 7
    dec_mlp_ratio: float = 3.0
    embed_kernel: int = 3
    lookahead: int = 1  # frames of future codes the decoder sees (a delay, not a symmetric kernel)
    # ISTFT head: each code frame yields `head_subframes` spectra of `head_n_fft` bins, hop = hop_length / subframes.
    head_subframes: int = 4
    head_n_fft: int = 400
    max_log_magnitude: float = 4.6  # exp(4.6) ~ 100: the magnitude clip of Vocos' ISTFT head

    def __post_init__(self) -> None:
        positive = ("sample_rate", "hop_length", "codebook_size", "codebook_dim", "enc_subframes", "enc_n_fft",
                    "enc_n_mels", "enc_dim", "enc_layers", "enc_kernel", "dec_dim", "dec_layers", "dec_kernel",
                    "embed_kernel", "head_subframes", "head_n_fft")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"codec config: {name} must be a positive integer, got {v!r}")
        if not isinstance(self.lookahead, int) or self.lookahead < 0:
            raise ConfigError(f"codec config: lookahead must be an integer >= 0, got {self.lookahead!r}")
        for name in ("enc_subframes", "head_subframes"):
            if self.hop_length % getattr(self, name):
                raise ConfigError(f"codec config: hop_length {self.hop_length} is not divisible by {name}")
        if self.head_n_fft % self.head_hop or self.head_n_fft < 3 * self.head_hop:
            raise ConfigError(
                f"codec config: head_n_fft {self.head_n_fft} must be a multiple (>= 3, for a constant Hann overlap-add envelope) of the ISTFT hop "
                f"{self.head_hop}", "e.g. head_n_fft = 4 * hop_length / head_subframes")
        if self.enc_n_fft < self.hop_length // self.enc_subframes:
            raise ConfigError("codec config: enc_n_fft must cover at least one encoder sub-frame")
        if self.enc_kernel % 2 == 0:
            raise ConfigError("codec config: enc_kernel must be odd (symmetric encoder convolutions)")
        if self.dec_mlp_ratio <= 0:
            raise ConfigError("codec config: dec_mlp_ratio must be positive")

    @property
    def head_hop(self) -> int:
        """Samples between two ISTFT spectra."""
        return self.hop_length // self.head_subframes

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict[str, JSONValue]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> CodecConfig:
        return dataclass_from_dict(cls, d, "codec config", noun="keys")

    @classmethod
    def preset(cls, name: str, **overrides: object) -> CodecConfig:
        if name not in PRESETS:
            raise ConfigError(f"unknown codec preset {name!r}", f"one of {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    # For unit tests and benchmarks: 0.37 M parameters, 16 kHz / 40 Hz / 1024 codes.
    "tiny": {"codebook_dim": 16, "enc_dim": 64, "enc_layers": 2, "enc_n_mels": 32, "dec_dim": 96,
             "dec_layers": 3, "dec_mlp_ratio": 2.0},
    # The toy world: 16 kHz espeak-ng speech, 40 codes/s, 1024 codes, ~30-40 min of CPU training (5.57 M).
    "toy": {},
}
