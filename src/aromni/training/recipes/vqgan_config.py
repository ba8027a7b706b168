"""Typed configuration of ``aromni vqgan train``: a YAML file and/or ``key=value`` overrides.

Nested model fields are addressed as ``model.<field>`` (e.g. ``model.n_embed=256``); ``preset`` picks the
starting architecture (:data:`aromni.tokenizers.image.config.PRESETS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aromni.errors import ConfigError
from aromni.tokenizers.image.config import VQGANConfig
from aromni.utils.config import apply_overrides, dataclass_from_dict, read_yaml
from aromni.utils.io import JSONValue

CODEBOOK_MODES = ("ema", "straight_through")


@dataclass
class VQGANTrainConfig:
    """Hyper-parameters of a small-VQGAN training run.

    Losses: ``l1_weight * |x - x'| + l2_weight * (x - x')^2 + commitment_weight * |sg[e] - z|^2``, plus
    ``codebook_weight * |e - sg[z]|^2`` in ``straight_through`` mode (taming's legacy weights are 1.0 and 0.25);
    in ``ema`` mode the codebook follows an exponential moving average of its assigned encoder outputs instead.
    Codes used fewer than ``restart_threshold`` times in ``restart_every`` steps are re-seeded from encoder outputs.
    A hinge PatchGAN term (``gan_weight``) joins from step ``gan_start`` (``-1``: never).

    Colour terms (both off by default, so older runs resume unchanged): ``color_weight`` times the L1 distance
    between the mean colours of ``color_patch``×``color_patch`` patches of input and reconstruction, and
    ``fg_weight`` times the L1 distance on foreground pixels only (pixels farther than ``fg_threshold``, in the
    [-1, 1] model range, from the image's median border colour). The toy world's shapes cover 8-20% of the image,
    so the plain L1/L2 terms barely see their colour. ``judge_images`` > 0 adds the toy world image judge's per-attribute accuracy on
    reconstructions of that many freshly rendered images to every evaluation.
    """

    preset: str = "toy"
    model: dict[str, Any] = field(default_factory=dict)
    steps: int = 3000
    batch_size: int = 8
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    commitment_weight: float = 1.0
    codebook_weight: float = 0.25
    codebook_mode: str = "ema"
    ema_decay: float = 0.95
    init_codebook_from_data: bool = True
    restart_every: int = 50
    restart_threshold: float = 1.0
    color_weight: float = 0.0
    color_patch: int = 8
    fg_weight: float = 0.0
    fg_threshold: float = 0.15
    judge_images: int = 0
    gan_start: int = -1
    gan_weight: float = 0.1
    disc_lr: float = 2e-4
    disc_channels: int = 32
    disc_layers: int = 2
    hflip: bool = False
    val_images: int = 32
    max_images: int = 0
    log_every: int = 25
    eval_every: int = 250
    save_every: int = 500
    keep_snapshots: bool = False
    time_limit_min: float = 0.0
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if self.codebook_mode not in CODEBOOK_MODES:
            raise ConfigError(f"train config: codebook_mode {self.codebook_mode!r}", f"one of {CODEBOOK_MODES}")
        for name in ("steps", "batch_size", "log_every", "eval_every", "save_every"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"train config: {name} must be positive, got {getattr(self, name)}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"train config: ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.lr <= 0 or len(self.betas) != 2:
            raise ConfigError("train config: lr must be positive and betas a pair")
        for name in ("color_weight", "fg_weight", "judge_images"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train config: {name} must be >= 0, got {getattr(self, name)}",
                                  "0 turns it off")
        if not 0.0 < self.fg_threshold < 2.0:
            raise ConfigError(f"train config: fg_threshold must be in (0, 2) (the [-1, 1] pixel range), "
                              f"got {self.fg_threshold}")
        model = self.model_config()  # validate the architecture early
        if self.color_patch <= 0 or model.resolution % self.color_patch:
            raise ConfigError(f"train config: color_patch must be a positive divisor of the image size "
                              f"{model.resolution}, got {self.color_patch}", "e.g. 8")
        if self.judge_images > 0 and model.resolution != 64:
            raise ConfigError(f"train config: judge_images needs 64x64 images (the toy world's renders), but the "
                              f"model's resolution is {model.resolution}", "set judge_images=0")

    def model_config(self) -> VQGANConfig:
        return VQGANConfig.preset(self.preset, **self.model)

    def to_dict(self) -> dict[str, JSONValue]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> VQGANTrainConfig:
        return dataclass_from_dict(cls, d, "train config", noun="keys")


def parse_overrides(items: list[str]) -> dict[str, JSONValue]:
    """``["steps=100", "model.n_embed=256"]`` -> nested dict; values are parsed as YAML scalars/lists."""
    return apply_overrides({}, items)


def load_train_config(path: str | Path | None, overrides: list[str]) -> VQGANTrainConfig:
    """Merge a YAML file (optional) with ``key=value`` overrides into a validated :class:`VQGANTrainConfig`.

    A ``model=...`` override is merged into the file's ``model`` mapping rather than replacing it.
    """
    base = read_yaml(path) if path is not None else {}
    extra = parse_overrides(overrides)
    model = {**base.get("model", {}), **extra.pop("model", {})}
    return VQGANTrainConfig.from_dict({**base, **extra, "model": model})
