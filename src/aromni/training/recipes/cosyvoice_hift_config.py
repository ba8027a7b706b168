"""The settings of a HiFT vocoder training run (``aromni cosyvoice hift-train``): YAML + ``key=value`` overrides,
saved in the checkpoint so ``--resume`` reuses them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aromni.cosyvoice.hift.config import HiFTConfig
from aromni.errors import ConfigError, InputError
from aromni.training.loop import checkpoint_meta
from aromni.utils.config import apply_overrides, dataclass_from_dict, yaml_with_overrides
from aromni.utils.io import JSONValue

__all__ = ["HiFTTrainConfig", "load_hift_train_config", "resume_hift_config"]


@dataclass
class HiFTTrainConfig:
    """Everything a HiFT run depends on (saved in the checkpoint)."""

    preset: str = "toy"
    hift: dict[str, Any] = field(default_factory=dict)  # overrides of HiFTConfig fields
    steps: int = 2000
    batch_size: int = 8
    segment_frames: int = 32  # random crops of this many mel frames (x 480 samples; 32 = 0.64 s)
    lr: float = 1e-3
    lr_min_ratio: float = 0.1  # linear decay to lr * this (aromni.training.optim.lr_factor)
    warmup_steps: int = 50
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    mel_weight: float = 1.0  # L1 of the full-band (f_max None) Matcha log-mel, CosyVoice's GAN-loss mel
    mr_mel_weight: float = 1.0  # multi-resolution log-mel L1 (the codec's MultiResolutionSpectralLoss)
    stft_weight: float = 1.0  # multi-resolution STFT (spectral convergence + log magnitude)
    f0_weight: float = 0.01  # L1 in Hz of the F0 predictor vs the YIN target (CosyVoice: weight 1 on pyworld F0)
    f0_lr_scale: float = 10.0  # the F0 predictor learns at lr * this: its output is in Hz (targets ~100-300)
    teacher_f0: bool = False  # build the training excitation from the YIN F0 instead of the prediction
    f0_fmin: float = 60.0
    f0_fmax: float = 500.0
    gan_start_step: int | None = None  # None: no GAN phase
    adv_weight: float = 1.0
    fm_weight: float = 2.0
    disc_lr: float = 2e-4
    disc_period_width: int = 8
    gan_batch: int = 4
    train_clips: int = 800  # seeded sample of the world's train split
    test_clips: int = 24  # seeded sample of the test split (held-out voices and sentences)
    max_seconds: float = 8.0  # longest clip used
    griffin_lim_iters: int = 60
    log_every: int = 10
    eval_every: int = 200
    checkpoint_every: int = 200
    max_minutes: float | None = None  # stop (checkpoint + export) after this much training time
    seed: int = 0
    threads: int | None = None  # torch intra-op threads (None: leave as is)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # YAML gives lists
        for name in ("steps", "batch_size", "segment_frames", "log_every", "eval_every", "checkpoint_every",
                     "train_clips", "test_clips", "gan_batch", "griffin_lim_iters"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"hift train config: {name} must be positive")
        if self.lr <= 0 or not 0 <= self.lr_min_ratio <= 1:
            raise ConfigError("hift train config: lr must be > 0 and lr_min_ratio in [0, 1]")
        if self.f0_lr_scale <= 0:
            raise ConfigError("hift train config: f0_lr_scale must be positive")
        if not 0 < self.f0_fmin < self.f0_fmax:
            raise ConfigError("hift train config: need 0 < f0_fmin < f0_fmax")
        self.hift_config()  # validate early

    def hift_config(self) -> HiFTConfig:
        return HiFTConfig.preset(self.preset, **self.hift)

    def to_dict(self) -> dict[str, JSONValue]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> HiFTTrainConfig:
        return dataclass_from_dict(cls, d, "hift train config", noun="keys")


def load_hift_train_config(path: str | Path | None, overrides: list[str]) -> HiFTTrainConfig:
    """YAML file (optional) + ``key=value`` overrides (``hift.base_channels=128``)."""
    return HiFTTrainConfig.from_dict(yaml_with_overrides(path, overrides))


def resume_hift_config(out: str | Path, overrides: list[str]) -> HiFTTrainConfig:
    """The settings of the run in ``out`` (from its checkpoint) with ``key=value`` changes applied."""
    meta = checkpoint_meta(out)
    if meta is None:
        raise InputError(f"{Path(out)}: no checkpoint to resume from", "drop --resume to start a new run")
    return HiFTTrainConfig.from_dict(apply_overrides(meta["config"], overrides))

