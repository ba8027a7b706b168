"""Reading and writing image files (Pillow), with one clear :class:`InputError` per way a file can be bad."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from aromni.errors import InputError
from aromni.tokenizers.image.preprocess import require_pil, to_pil
from aromni.utils.io import atomic_path

#: Largest image :func:`load_image` decodes by default (pixels; 8192 x 8192). Larger files are refused before
#: decoding, so a hostile or mistaken file cannot exhaust memory.
MAX_PIXELS = 8192 * 8192


def load_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> Any:
    """Open an image file as a fully decoded PIL image, rotated upright by its EXIF orientation.

    The mode is kept (RGBA stays RGBA) so that :func:`~.preprocess.whiten_transparency` can blend alpha.
    Raises :class:`InputError` naming the file when it is missing, empty, not an image, truncated or corrupt,
    or larger than ``max_pixels``.
    """
    Image = require_pil()
    from PIL import ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such image file", "check the path")
    if not path.is_file():
        raise InputError(f"{path}: not a file", "pass an image file, not a directory")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)", "re-create or re-download the image")
    limit = f"the limit is {max_pixels:,} pixels"
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise InputError(f"{path}: image too large ({w}x{h} = {w * h:,} pixels; {limit})",
                                 "downscale it first or pass a larger max_pixels")
            img.load()  # decode now so truncation surfaces here, not later
            out = ImageOps.exif_transpose(img)
            out.load()
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file Pillow can read", "pass a PNG, JPEG, WebP, ... file") from None
    except Image.DecompressionBombError:
        raise InputError(f"{path}: image too large ({limit})", "downscale it first") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: truncated or corrupt image ({e})", "re-create or re-download the image") from None
    if out.width == 0 or out.height == 0:
        raise InputError(f"{path}: image has no pixels ({out.width}x{out.height})")
    return out


def _format_for(path: Path) -> str:
    Image = require_pil()
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown image extension {path.suffix!r}", "use .png, .jpg, .webp, ...")
    return fmt


def save_image(img: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a PIL image (or model output ``[3, H, W]`` / ``[1, 3, H, W]``) atomically; format from the suffix.

    Refuses to replace an existing file unless ``overwrite=True``.
    """
    path = Path(path)
    if isinstance(img, torch.Tensor):
        if img.dim() == 4 and img.shape[0] != 1:
            raise InputError(f"save_image takes one image, got a batch of {img.shape[0]}", "save them one by one")
        img = to_pil(img)[0]
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists", "choose another path or pass overwrite=True (--overwrite)")
    fmt = _format_for(path)
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")  # JPEG has no alpha channel
    with atomic_path(path, suffix=path.suffix) as tmp:
        img.save(tmp, format=fmt)
    return path
