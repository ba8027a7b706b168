"""The image judge's data: freshly rendered, labelled ground truth (all shape×colour pairs, jittered like the
world) and a model's per-attribute accuracy on such a set.

The training recipe that uses them is :mod:`aromni.training.recipes.judge_image`.
"""

from __future__ import annotations

import random

import numpy as np
import torch

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
from aromni.toyworld.judges.image import ImageJudgeModel


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
    """Share of ``images`` whose attribute ``model`` reads right, per attribute and ``"all"`` five at once (the
    model is put back in training mode)."""
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
