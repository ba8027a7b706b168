"""The HiFT vocoder's settings: a typed dataclass with CosyVoice2's values (``cosyvoice2`` preset) and a small
``toy`` preset that trains on CPU with the same structure (only the channel widths shrink)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from aromni.errors import ConfigError
from aromni.utils.config import dataclass_from_dict
from aromni.utils.io import JSONValue

__all__ = ["HIFT_PRESETS", "HiFTConfig"]


@dataclass(frozen=True)
class HiFTConfig:
    """``HiFTGenerator``'s constructor arguments in CosyVoice2's ``cosyvoice2.yaml`` (names kept where they
    exist there; ``f0_channels`` is the F0 predictor's ``cond_channels``; ``istft_params`` is split in two)."""

    in_channels: int = 80
    base_channels: int = 512
    nb_harmonics: int = 8
    sampling_rate: int = 24000
    nsf_alpha: float = 0.1  # sine amplitude
    nsf_sigma: float = 0.003  # noise std in voiced samples
    nsf_voiced_threshold: float = 10.0  # Hz: F0 above this is voiced
    upsample_rates: tuple[int, ...] = (8, 5, 3)
    upsample_kernel_sizes: tuple[int, ...] = (16, 11, 7)
    istft_n_fft: int = 16
    istft_hop: int = 4
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    source_resblock_kernel_sizes: tuple[int, ...] = (7, 7, 11)
    source_resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    lrelu_slope: float = 0.1
    audio_limit: float = 0.99
    f0_channels: int = 512

    def __post_init__(self) -> None:
        for name in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes",
                     "source_resblock_kernel_sizes"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        for name in ("resblock_dilation_sizes", "source_resblock_dilation_sizes"):
            object.__setattr__(self, name, tuple(tuple(int(d) for d in ds) for ds in getattr(self, name)))
        n_up = len(self.upsample_rates)
        if n_up == 0 or len(self.upsample_kernel_sizes) != n_up:
            raise ConfigError("hift config: upsample_rates and upsample_kernel_sizes need the same, non-zero length")
        if len(self.source_resblock_kernel_sizes) != n_up or len(self.source_resblock_dilation_sizes) != n_up:
            raise ConfigError(f"hift config: one source resblock per upsampling stage ({n_up}) is needed")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError("hift config: resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        if any(u <= 0 or k < u or (k - u) % 2 for u, k in zip(self.upsample_rates, self.upsample_kernel_sizes)):
            raise ConfigError("hift config: each upsample kernel must be >= its rate with an even difference",
                              "CosyVoice2 uses rates [8, 5, 3] with kernels [16, 11, 7]")
        if self.base_channels % (2 ** n_up) or self.base_channels < 2 ** n_up:
            raise ConfigError(f"hift config: base_channels {self.base_channels} must be a multiple of 2**{n_up}")
        for name in ("in_channels", "f0_channels", "sampling_rate", "istft_n_fft", "istft_hop"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"hift config: {name} must be positive")
        if self.istft_n_fft % 2 or self.istft_hop > self.istft_n_fft:
            raise ConfigError("hift config: istft_n_fft must be even and >= istft_hop")

    @property
    def hop_length(self) -> int:
        """Output samples per mel frame (480 for CosyVoice2: 8 * 5 * 3 * 4)."""
        return math.prod(self.upsample_rates) * self.istft_hop

    @property
    def sine_generator(self) -> str:
        """``"sinegen"`` at 22.05 kHz, else ``"sinegen2"``: the rule of CosyVoice's code (``sinegen_type='1' if
        sampling_rate == 22050 else '2'``). Its comment ("in CosyVoice2, we use the original SineGen") says the
        opposite for 24 kHz; the code is what ran, so we follow the code."""
        return "sinegen" if self.sampling_rate == 22050 else "sinegen2"

    def to_dict(self) -> dict[str, JSONValue]:
        d = dataclasses.asdict(self)
        return {k: ([list(x) for x in v] if k.endswith("dilation_sizes") else list(v)) if isinstance(v, tuple) else v
                for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> HiFTConfig:
        return dataclass_from_dict(cls, d, "hift config", noun="keys")

    @classmethod
    def preset(cls, name: str, **overrides: object) -> HiFTConfig:
        if name not in HIFT_PRESETS:
            raise ConfigError(f"unknown hift preset {name!r}", f"choose one of {sorted(HIFT_PRESETS)}")
        return cls.from_dict({**HIFT_PRESETS[name], **overrides})


#: ``cosyvoice2``: the released model (``hift.pt``); ``toy``: the same structure, 1/8 of the width.
HIFT_PRESETS: dict[str, dict[str, object]] = {
    "cosyvoice2": {},
    "toy": {"base_channels": 64, "f0_channels": 64},
}
