"""Image judge: a small CNN that reads shape, colour, size, position and background of a world image.

``[B, 3, 64, 64]`` in [0, 1] -> conv 4×4/2 (16) -> conv 3×3 (32) -> pool -> conv (64) -> pool -> conv (64) ->
flatten (64·8·8, keeps *where* things are) -> 128 -> one linear head per attribute. Trained on rendered ground
truth with blur / down-up-sampling / 8×8 block blending / colour shift / noise / posterisation, so that VQGAN
reconstructions are read like the originals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from aromni.errors import ConfigError, InputError
from aromni.toyworld.attributes import ATTRIBUTE_NAMES, vocabulary
from aromni.toyworld.judges.store import default_judge_dir, load_judge_files, save_judge

JUDGE_TYPE = "toyworld-image-judge"


@dataclass
class ImageJudgeConfig:
    classes: dict[str, list[str]] = field(default_factory=vocabulary)
    image_size: int = 64
    width: int = 64
    hidden: int = 128

    def __post_init__(self) -> None:
        if set(self.classes) != set(ATTRIBUTE_NAMES):
            raise ConfigError(f"image judge classes must cover {ATTRIBUTE_NAMES}, got {sorted(self.classes)}")
        if self.image_size != 64:
            raise ConfigError("the image judge reads 64×64 images")


class ImageJudgeModel(nn.Module):
    """``images [B, 3, 64, 64]`` -> ``{attribute: logits [B, n_classes]}``."""

    def __init__(self, cfg: ImageJudgeConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 4, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),  # 32×32
            *block(16, 32), nn.MaxPool2d(2),  # 16×16
            *block(32, w), nn.MaxPool2d(2),  # 8×8
            *block(w, w),
            nn.Flatten(), nn.Linear(w * 8 * 8, cfg.hidden), nn.ReLU(), nn.Dropout(0.1),
        )
        self.heads = nn.ModuleDict({k: nn.Linear(cfg.hidden, len(v)) for k, v in cfg.classes.items()})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body(images * 2 - 1)
        return {k: head(h) for k, head in self.heads.items()}


def to_batch(images) -> torch.Tensor:
    """PIL images, uint8 arrays ``[H, W, 3]`` or a float tensor ``[B, 3, H, W]`` in [0, 1] -> ``[B, 3, 64, 64]``."""
    import numpy as np

    if isinstance(images, torch.Tensor):
        x = images.float()
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"image tensor must be [B, 3, H, W], got {list(x.shape)}")
    else:
        arrays = []
        for im in images:
            a = np.asarray(im.convert("RGB") if hasattr(im, "convert") else im)
            if a.ndim != 3 or a.shape[-1] != 3:
                raise InputError(f"image array must be [H, W, 3], got {list(a.shape)}")
            arrays.append(torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1))
        if not arrays:
            return torch.zeros(0, 3, 64, 64)
        sizes = {tuple(a.shape) for a in arrays}
        x = torch.stack([nn.functional.interpolate(a[None], size=(64, 64), mode="area")[0]
                         if a.shape[1:] != (64, 64) else a for a in arrays]) if len(sizes) > 1 else torch.stack(arrays)
    if x.shape[-2:] != (64, 64):
        x = nn.functional.interpolate(x, size=(64, 64), mode="area")
    return x.clamp(0, 1)


class ImageJudge:
    """Reads the five attributes of world images."""

    def __init__(self, model: ImageJudgeModel):
        self.model = model.eval()
        self.cfg = model.cfg

    @classmethod
    def load(cls, path: str | Path | None = None) -> ImageJudge:
        config, state = load_judge_files(path or default_judge_dir("image"), JUDGE_TYPE)
        model = ImageJudgeModel(ImageJudgeConfig(**{k: config[k] for k in ("classes", "image_size", "width", "hidden")}))
        model.load_state_dict(state)
        return cls(model)

    def save(self, out: str | Path, metrics: dict | None = None) -> None:
        save_judge(out, self.model, {"type": JUDGE_TYPE, **asdict(self.cfg), "metrics": metrics or {}})

    @torch.inference_mode()
    def read(self, images, *, batch_size: int = 256) -> list[dict[str, str]]:
        """One ``{"shape", "color", "size", "position", "background"}`` dict per image."""
        x = to_batch(images)
        out: list[dict[str, str]] = []
        for i in range(0, x.shape[0], batch_size):
            logits = self.model(x[i : i + batch_size])
            idx = {k: v.argmax(-1).tolist() for k, v in logits.items()}
            n = len(next(iter(idx.values())))
            out += [{k: self.cfg.classes[k][idx[k][j]] for k in ATTRIBUTE_NAMES} for j in range(n)]
        return out

    @torch.inference_mode()
    def posteriors(self, images, *, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """``{attribute: p(class | image) [B, n_classes]}`` (softmax of the heads; the classes in ``cfg.classes``
        order), for scores that need the whole distribution, such as the Inception-Score analogue."""
        x = to_batch(images)
        parts = [self.model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        return {k: torch.cat([p[k] for p in parts]).softmax(-1) if parts else torch.zeros(0, len(v))
                for k, v in self.cfg.classes.items()}

    def read_files(self, paths, **kw) -> list[dict[str, str]]:
        from PIL import Image

        images = []
        for p in paths:
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        return self.read(images, **kw)
