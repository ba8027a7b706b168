"""Settings of a flow-matching token-to-mel training run (``aromni cosyvoice flow-train``): YAML + ``key=value``
overrides, saved in the checkpoint so ``--resume`` reuses them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aromni.cosyvoice.flow.config import FlowConfig
from aromni.errors import ConfigError, InputError
from aromni.training.loop import checkpoint_meta
from aromni.utils.config import apply_overrides, dataclass_from_dict, yaml_with_overrides
from aromni.utils.io import JSONValue

__all__ = ["FlowTrainConfig", "load_flow_train_config", "resume_flow_config"]


@dataclass
class FlowTrainConfig:
    """Everything a flow training run depends on (saved in the checkpoint)."""

    preset: str = "toy"
    model: dict[str, Any] = field(default_factory=dict)  # overrides of FlowConfig fields (nested)
    vocab_size: int = 0  # 0: the tokenizer's codebook (``tokenizer``), else the largest token id + 1
    tokenizer: str = ""  # the speech tokenizer's directory (its config.json gives the codebook size)
    steps: int = 20000
    batch_size: int = 16
    crop_tokens: int = 60  # random crop of longer clips (0: whole clips); 60 tokens = 2.4 s
    lr: float = 1e-3
    lr_min_ratio: float = 0.1  # linear decay to lr * this at ``steps`` (training.optim.lr_factor)
    warmup_steps: int = 100
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_seconds: float = 6.0  # longest clip used (train and evaluation)
    train_clips: int = 2000  # seeded sample of the training split (0: all)
    eval_split: str = "test"
    eval_clips: int = 16
    eval_batch: int = 8
    n_timesteps: int = 10
    cfg_rate: float = 0.7
    prior_weight: float = 0.0  # Matcha's mu-to-mel MSE beside the CFM loss (0: CosyVoice2, which has none)
    log_every: int = 25
    eval_every: int = 500
    checkpoint_every: int = 250
    max_minutes: float | None = None  # stop (checkpoint + export) after this much training time
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "eval_batch", "n_timesteps"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"flow train config: {name} must be positive")
        for name in ("crop_tokens", "train_clips", "eval_clips", "eval_every", "vocab_size", "warmup_steps"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"flow train config: {name} must be >= 0")
        if self.crop_tokens and self.crop_tokens < 8:
            raise ConfigError("flow train config: crop_tokens must be 0 or at least 8")
        if not self.prior_weight >= 0:
            raise ConfigError(f"flow train config: prior_weight must be >= 0, got {self.prior_weight}")
        if self.lr <= 0 or not 0 <= self.lr_min_ratio <= 1 or self.max_seconds <= 0:
            raise ConfigError("flow train config: need lr > 0, lr_min_ratio in [0, 1], max_seconds > 0")
        self.flow_config(self.vocab_size or 1)  # validate the model settings early

    def flow_config(self, vocab_size: int) -> FlowConfig:
        return FlowConfig.preset(self.preset, **{**self.model, "vocab_size": vocab_size})

    def to_dict(self) -> dict[str, JSONValue]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> FlowTrainConfig:
        return dataclass_from_dict(cls, d, "flow train config", noun="keys")


def load_flow_train_config(path: str | Path | None, overrides: list[str]) -> FlowTrainConfig:
    """YAML file (optional) + ``key=value`` overrides (``model.estimator.channels=96``)."""
    return FlowTrainConfig.from_dict(yaml_with_overrides(path, overrides))


def resume_flow_config(out: str | Path, overrides: list[str]) -> FlowTrainConfig:
    """The settings of the run in ``out`` (from its checkpoint) with ``key=value`` changes applied."""
    meta = checkpoint_meta(out)
    if meta is None:
        raise InputError(f"{Path(out)}: no checkpoint to resume from", "drop --resume to start a new run")
    return FlowTrainConfig.from_dict(apply_overrides(meta["config"], overrides))

