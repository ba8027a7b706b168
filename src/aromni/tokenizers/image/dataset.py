"""Training images: a directory or glob -> one in-memory uint8 tensor ``[N, 3, R, R]`` (preprocessed per §B.2).

Held in memory because the VQGANs trained here are small (64x64 images: 12 KiB each).
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aromni.errors import InputError
from aromni.tokenizers.image.image_io import load_image
from aromni.tokenizers.image.preprocess import resize_center_crop, whiten_transparency

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def find_images(spec: str) -> list[Path]:
    """A directory (searched recursively for image suffixes) or a glob pattern -> sorted image paths."""
    p = Path(spec)
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
    else:
        files = [Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file()]
    if not files:
        raise InputError(f"no images found at {spec!r}", "pass a directory of images or a glob like 'data/*.png'")
    return sorted(files)


def load_images(paths: list[Path], size: int, *, disable_progress: bool = False) -> torch.Tensor:
    """Image files -> uint8 ``[N, 3, size, size]`` (transparency whitened, short side resized, center crop)."""
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    for i, path in enumerate(tqdm(paths, desc="loading images", disable=disable_progress, leave=False)):
        img = resize_center_crop(whiten_transparency(load_image(path)), size)
        out[i] = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
    return out


def to_model_range(u8: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 in [-1, 1], computed in float64 like :func:`~.preprocess.pil_to_tensor`."""
    return (u8.double() / 255.0 * 2 - 1).float()
