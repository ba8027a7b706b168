"""Train the image judge on freshly rendered ground truth (all shape×colour pairs, jittered like the world).

The judge is not the model under test, so it sees every attribute combination, including the pairs the world
holds out for its test split. Resumable through ``checkpoint.pt`` like the speech judge.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aromni.errors import CheckpointError, InputError
from aromni.toyworld.attributes import (
    ATTRIBUTE_NAMES,
    BACKGROUNDS,
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    ImageAttrs,
)
from aromni.toyworld.images import random_spec, render
from aromni.toyworld.judges.augment import augment_image
from aromni.toyworld.judges.image import ImageJudge, ImageJudgeConfig, ImageJudgeModel
from aromni.training.guard import check_finite, check_weights, existing
from aromni.utils.io import atomic_path


@dataclass
class ImageTrainConfig:
    steps: int = 1000
    batch_size: int = 64
    train_images: int = 8000
    val_images: int = 1000
    lr: float = 2e-3
    clean_fraction: float = 0.25
    save_every: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.train_images, self.val_images) <= 0:
            raise InputError("image judge steps, batch size and image counts must be positive")


def render_set(n: int, seed: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``n`` random renders -> ``(images [n, 3, 64, 64] uint8, {attribute: labels [n]})``."""
    rng = random.Random(seed)
    choices = {"shape": SHAPES, "color": list(COLORS), "size": list(SIZES), "position": list(POSITIONS),
               "background": list(BACKGROUNDS)}
    images = np.zeros((n, 64, 64, 3), dtype=np.uint8)
    labels = {k: np.zeros(n, dtype=np.int64) for k in ATTRIBUTE_NAMES}
    for i in range(n):
        pick = {k: rng.randrange(len(v)) for k, v in choices.items()}
        attrs = ImageAttrs(**{k: choices[k][j] for k, j in pick.items()})
        images[i] = np.asarray(render(random_spec(attrs, rng)))
        for k, j in pick.items():
            labels[k][i] = j
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), {k: torch.from_numpy(v) for k, v in labels.items()}


def accuracy(model: ImageJudgeModel, images: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    model.eval()
    with torch.inference_mode():
        correct = {k: 0 for k in ATTRIBUTE_NAMES}
        all_ok = 0
        for i in range(0, images.shape[0], 256):
            logits = model(images[i : i + 256].float() / 255)
            ok = {k: logits[k].argmax(-1) == labels[k][i : i + 256] for k in ATTRIBUTE_NAMES}
            for k in ATTRIBUTE_NAMES:
                correct[k] += int(ok[k].sum())
            all_ok += int(torch.stack(list(ok.values())).all(0).sum())
    n = images.shape[0]
    model.train()
    return {**{k: round(v / n, 5) for k, v in correct.items()}, "all": round(all_ok / n, 5)}


def train_image_judge(out: str | Path, cfg: ImageTrainConfig | None = None, *, progress: bool = True) -> dict:
    from tqdm import tqdm

    cfg = cfg or ImageTrainConfig()
    out = Path(out)
    torch.manual_seed(cfg.seed)
    model = ImageJudgeModel(ImageJudgeConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(cfg.seed)
    step, ckpt = 0, out / "checkpoint.pt"
    if ckpt.is_file():
        try:
            state = torch.load(ckpt, weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{ckpt}: cannot be read ({e})", "delete it to start again") from None
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            g.set_state(state["gen"])
            step = int(state["step"])
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{ckpt}: damaged judge checkpoint ({type(e).__name__}: "
                                  f"{' '.join(str(e).split())[:200]})", "delete it to start again") from None
    t0 = time.perf_counter()
    images, labels = render_set(cfg.train_images, f"judge-train-{cfg.seed}")
    val_images, val_labels = render_set(cfg.val_images, f"judge-val-{cfg.seed}")
    sched = lambda s: cfg.lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * min(1.0, s / cfg.steps))))
    bar = tqdm(total=cfg.steps, initial=step, desc="image judge", disable=None if progress else True)
    model.train()
    while step < cfg.steps:
        idx = torch.randint(0, images.shape[0], (cfg.batch_size,), generator=g)
        x = images[idx].float() / 255
        if float(torch.rand((), generator=g)) >= cfg.clean_fraction:
            x = augment_image(x, g)
        logits = model(x)
        loss = sum(torch.nn.functional.cross_entropy(logits[k], labels[k][idx]) for k in ATTRIBUTE_NAMES)
        for group in opt.param_groups:
            group["lr"] = float(sched(step))
        opt.zero_grad(set_to_none=True)
        check_finite({"loss": loss}, step + 1, existing(ckpt), lr_key="the judge lr", lr=cfg.lr)
        loss.backward()
        opt.step()
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            check_weights(model.parameters(), step, existing(ckpt), lr_key="the judge lr", lr=cfg.lr)
            with atomic_path(ckpt, suffix=".pt") as tmp:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": g.get_state(),
                            "step": step}, tmp)
    bar.close()
    vg = torch.Generator().manual_seed(cfg.seed + 1)
    aug_val = (augment_image(val_images.float() / 255, vg) * 255).round().to(torch.uint8)
    metrics = {"val_clean": accuracy(model, val_images, val_labels),
               "val_augmented": accuracy(model, aug_val, val_labels), "steps": step,
               "params": sum(p.numel() for p in model.parameters()),
               "train_seconds_this_run": round(time.perf_counter() - t0, 1)}
    ImageJudge(model).save(out, metrics)
    return metrics
