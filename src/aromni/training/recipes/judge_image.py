"""The toy-world image judge's training recipe: train it on freshly rendered ground truth (all shape×colour pairs,
jittered like the world; :mod:`aromni.toyworld.judges.image_data`).

The judge is not the model under test, so it sees every attribute combination, including the pairs the world
holds out for its test split. Trained by :class:`~aromni.training.loop.TrainLoop` (resumable from the
checkpoints in ``out`` like the speech judge).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aromni.errors import InputError
from aromni.toyworld.attributes import ATTRIBUTE_NAMES
from aromni.toyworld.judges.augment import augment_image
from aromni.toyworld.judges.image import ImageJudge, ImageJudgeConfig, ImageJudgeModel
from aromni.toyworld.judges.image_data import accuracy, render_set
from aromni.training.loop import Update
from aromni.training.recipes.judge import fit_judge


@dataclass
class ImageTrainConfig:
    steps: int = 1000
    batch_size: int = 64
    train_images: int = 8000
    val_images: int = 1000
    lr: float = 2e-3
    clean_fraction: float = 0.25
    save_every: int = 200
    log_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.train_images, self.val_images) <= 0:
            raise InputError("image judge steps, batch size and image counts must be positive")


class ImageJudgeRecipe:
    """The image judge's step on :class:`~aromni.training.loop.TrainLoop`: a seeded batch of renders (a share
    augmented), the summed per-attribute cross-entropy, a cosine learning rate."""

    def __init__(self, cfg: ImageTrainConfig):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.model = ImageJudgeModel(ImageJudgeConfig()).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=1e-4)
        self.gen = torch.Generator().manual_seed(cfg.seed)  # batch order and augmentation: the data position
        self.images, self.labels = render_set(cfg.train_images, f"judge-train-{cfg.seed}")

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def lr_at(self, step: int) -> float:
        return float(self.cfg.lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * min(1.0, step / self.cfg.steps)))))

    def train_step(self, step: int, logs: dict[str, float]) -> Iterator[Update]:
        idx = torch.randint(0, self.images.shape[0], (self.cfg.batch_size,), generator=self.gen)
        x = self.images[idx].float() / 255
        if float(torch.rand((), generator=self.gen)) >= self.cfg.clean_fraction:
            x = augment_image(x, self.gen)
        logits = self.model(x)
        loss = sum(torch.nn.functional.cross_entropy(logits[k], self.labels[k][idx]) for k in ATTRIBUTE_NAMES)
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(step)
        logs.update(loss=loss.item(), lr=self.lr_at(step))
        yield Update(loss, self.opt)

    def evaluate(self, step: int) -> dict[str, float]:
        return {}  # the judge is scored once, after training

    def log_fields(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.gen.set_state(state["gen"])


def train_image_judge(out: str | Path, cfg: ImageTrainConfig | None = None, *, progress: bool = True,
                      until: int | None = None) -> dict:
    """Train (or resume from the newest checkpoint in ``out``) the image judge and save it to ``out``; returns its metrics.

    ``until``: stop at that step with a checkpoint (an interrupted run, for tests), without saving the judge."""
    cfg = cfg or ImageTrainConfig()
    out = Path(out)
    t0 = time.perf_counter()
    recipe = ImageJudgeRecipe(cfg)
    step = fit_judge(recipe, cfg, out, desc="image judge", progress=progress, until=until)
    if step < cfg.steps:
        return {"steps": step}
    val_images, val_labels = render_set(cfg.val_images, f"judge-val-{cfg.seed}")
    vg = torch.Generator().manual_seed(cfg.seed + 1)
    aug_val = (augment_image(val_images.float() / 255, vg) * 255).round().to(torch.uint8)
    model = recipe.model
    metrics = {"val_clean": accuracy(model, val_images, val_labels),
               "val_augmented": accuracy(model, aug_val, val_labels), "steps": step,
               "params": sum(p.numel() for p in model.parameters()),
               "train_seconds_this_run": round(time.perf_counter() - t0, 1)}
    ImageJudge(model).save(out, metrics)
    return metrics
