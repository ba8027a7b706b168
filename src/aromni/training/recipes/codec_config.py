"""The settings of a codec training run (``aromni codec train``): YAML + ``key=value`` overrides, saved in the
checkpoint so ``--resume`` reuses them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aromni.errors import ConfigError, InputError
from aromni.tokenizers.speech.codec.config import CodecConfig
from aromni.training.loop import checkpoint_meta
from aromni.utils.config import apply_overrides, dataclass_from_dict, yaml_with_overrides
from aromni.utils.io import JSONValue


@dataclass
class CodecTrainConfig:
    """Everything a codec training run depends on (saved in the checkpoint)."""

    preset: str = "toy"
    codec: dict[str, Any] = field(default_factory=dict)  # overrides of CodecConfig fields
    steps: int = 3000
    batch_size: int = 16
    segment_frames: int = 48  # crop length in code frames (48 = 1.2 s at 40 Hz)
    lr: float = 1e-3
    lr_min_ratio: float = 0.1  # cosine decay to lr * this
    warmup_steps: int = 100
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    mel_weight: float = 1.0
    stft_weight: float = 1.0
    commit_weight: float = 1.0
    kmeans_batches: int = 8  # batches whose encoder outputs seed k-means
    kmeans_iters: int = 20
    dead_code_steps: int = 10  # restart codes unused for this many updates (aggressive: usage collapses otherwise)
    dead_code_steps_late: int = 40  # ...relaxed once the encoder has settled, to reduce code churn
    dead_code_late_after: int = 300  # step at which dead_code_steps_late takes over
    ema_decay: float = 0.95  # codebook EMA; 0.99 trails the encoder's early drift and usage collapses
    usage_window: int = 50  # updates over which "codebook usage %" is counted
    gan_start_step: int | None = None  # None: no GAN phase
    adv_weight: float = 0.05
    fm_weight: float = 0.1
    disc_lr: float = 2e-4
    disc_period_width: int = 8
    gan_batch: int = 4  # the discriminators see only this many items of each batch (they cost most of a GAN step)
    val_files: int = 16
    val_max_seconds: float = 10.0
    max_seconds: float = 60.0  # longest training file accepted
    log_every: int = 10
    eval_every: int = 250
    checkpoint_every: int = 250
    max_minutes: float | None = None  # stop (checkpoint + export) after this much training time
    seed: int = 0
    threads: int | None = None  # torch intra-op threads (None: leave as is)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # YAML gives lists
        ints = ("steps", "batch_size", "segment_frames", "kmeans_batches", "log_every", "eval_every",
                "checkpoint_every", "gan_batch")
        for name in ints:
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"codec train config: {name} must be positive")
        if self.lr <= 0 or not 0 <= self.lr_min_ratio <= 1:
            raise ConfigError("codec train config: lr must be > 0 and lr_min_ratio in [0, 1]")
        self.codec_config()  # validate early

    def codec_config(self) -> CodecConfig:
        return CodecConfig.preset(self.preset, **self.codec)

    def to_dict(self) -> dict[str, JSONValue]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> CodecTrainConfig:
        return dataclass_from_dict(cls, d, "codec train config", noun="keys")


def load_train_config(path: str | Path | None, overrides: list[str]) -> CodecTrainConfig:
    """YAML file (optional) + ``key=value`` overrides (dotted keys for nesting: ``codec.dec_dim=256``)."""
    return CodecTrainConfig.from_dict(yaml_with_overrides(path, overrides))


def resume_config(out: str | Path, overrides: list[str]) -> CodecTrainConfig:
    """The settings of the run in ``out`` (from its checkpoint) with ``key=value`` changes applied, e.g.
    ``steps=3000`` to extend it or ``gan_start_step=1500`` to add a GAN phase."""
    meta = checkpoint_meta(out)
    if meta is None:
        raise InputError(f"{Path(out)}: no checkpoint to resume from", "drop --resume to start a new run")
    return CodecTrainConfig.from_dict(apply_overrides(meta["config"], overrides))


def lr_at(step: int, cfg: CodecTrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``lr * lr_min_ratio`` at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


