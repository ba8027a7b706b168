"""Stage 1, omni pre-training (paper §3.2, Table 8): every token is a target, caption/ASR response text x2,
perceptual loss on image codes, linear warmup (5%) and decay, clip 1.0.

Run: ``aromni train pretrain --config configs/train/pretrain_tiny.yaml [key=value ...]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aromni.training.config import TrainConfig
from aromni.training.recipes import load_recipe_config
from aromni.training.trainer import Trainer
from aromni.utils.io import JSONValue
from aromni.vocab.tasks import tail_weighted_tasks

DEFAULTS: dict[str, JSONValue] = {
    "loss": {"mode": "pretrain", "weighted_ntp": True, "tail_tasks": list(tail_weighted_tasks()), "tail_weight": 2.0},
    "perceptual": {"enabled": True, "weight": 1.0},
    "data": {"seq_len": 1300, "too_long": "drop"},
    "optim": {"lr": 6e-5, "warmup_ratio": 0.05, "grad_clip": 1.0},
}


def config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    return load_recipe_config("pretrain", DEFAULTS, path, overrides)


def run(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, JSONValue]:
    return Trainer(config(path, overrides)).fit()
