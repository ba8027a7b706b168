"""Stage 2, omni instruction tuning (paper §4.1, Table 8): the loss covers response tokens only (the shard
``response`` column), the perceptual loss covers response images, optional ``<ins>...<res>`` segment weight.

Run: ``aromni train sft --config configs/train/sft_tiny.yaml model.init_from=runs/pretrain/bundle``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aromni.training.config import TrainConfig
from aromni.training.recipes import load_recipe_config
from aromni.training.trainer import Trainer
from aromni.utils.io import JSONValue

DEFAULTS: dict[str, JSONValue] = {
    "loss": {"mode": "sft", "weighted_ntp": True, "tail_tasks": [], "segment_weight": 1.0},
    "perceptual": {"enabled": True, "weight": 1.0},
    "data": {"seq_len": 3456, "too_long": "drop", "mixing": {"ratios": {}, "exhaust": "stop"}},
    "optim": {"lr": 2e-5, "warmup_ratio": 0.05, "grad_clip": 1.0},
}


def config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    return load_recipe_config("sft", DEFAULTS, path, overrides)


def run(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, JSONValue]:
    return Trainer(config(path, overrides)).fit()
