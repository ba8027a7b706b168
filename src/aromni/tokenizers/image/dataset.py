"""Training images: a directory or glob -> one in-memory uint8 tensor ``[N, 3, R, R]`` (preprocessed per §B.2).

Held in memory because the VQGANs trained here are small (64x64 images: 12 KiB each).
"""

from __future__ import annotations

import glob
import sys
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


def load_images(paths: list[Path], size: int, *, disable_progress: bool = False,
                skip_bad: bool = False) -> torch.Tensor:
    """Image files -> uint8 ``[N, 3, size, size]`` (transparency whitened, short side resized, center crop).

    A bad file raises its :class:`InputError`; with ``skip_bad`` it is left out and reported on stderr instead
    (an error only if no image is left).
    """
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    n, bad = 0, []
    for path in tqdm(paths, desc="loading images", disable=disable_progress, leave=False):
        try:
            img = resize_center_crop(whiten_transparency(load_image(path)), size)
        except InputError as e:
            if not skip_bad:
                raise
            bad.append(str(e))
            continue
        out[n] = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
        n += 1
    if bad:
        print(f"skipped {len(bad)} unreadable image(s); first: {bad[0]}", file=sys.stderr)
    if n == 0:
        raise InputError(f"none of the {len(paths)} images could be read", bad[0] if bad else None)
    return out[:n]


def to_model_range(u8: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 in [-1, 1], computed in float64 like :func:`~.preprocess.pil_to_tensor`."""
    return (u8.double() / 255.0 * 2 - 1).float()
