"""Chameleon's image pre- and post-processing (official-formats.md §B.2), for any model resolution.

Pre: non-RGB -> RGBA; if any alpha < 255 blend onto white (float64, then ``astype(uint8)``), else convert to RGB;
resize the short side to ``size`` with ``round()`` and LANCZOS; center crop; ``x / 255 * 2 - 1``.
Post: clamp to [-1, 1], ``(x + 1) / 2 * 255``, ``astype(uint8)`` (truncation, as the reference), HWC RGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from aromni.errors import InputError

if TYPE_CHECKING:  # Pillow is an optional extra
    from PIL import Image


def require_pil() -> ModuleType:
    try:
        from PIL import Image
    except ImportError:
        raise InputError("image support needs Pillow", "pip install 'aromni[image]'") from None
    return Image


def to_8bit(img: Image.Image) -> Image.Image:
    """High-bit-depth grayscale -> ``L``, scaled rather than clipped (other modes are returned as they are).

    Pillow converts ``I;16``/``I`` to 8 bits by clipping at 255, which turns a 16-bit PNG almost white. Here
    ``I;16*`` is scaled by ``1/257`` (65535 -> 255); ``I`` (32-bit, what some 16-bit files decode to) likewise
    when its values exceed 255, else it is taken as 8-bit. ``F`` (float) keeps Pillow's conversion (clipped to
    0..255).
    """
    Image = require_pil()
    if img.mode.startswith("I;16") or img.mode == "I":
        arr = np.asarray(img).astype(np.float64)
        if img.mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = np.clip(arr, 0, 65535) / 257.0
        return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "L")
    return img


def whiten_transparency(img: Image.Image) -> Image.Image:
    """Any-mode PIL image -> RGB; transparent pixels are alpha-blended onto white (16-bit grayscale is scaled to
    8 bits first, see :func:`to_8bit`)."""
    Image = require_pil()
    if img.mode == "RGB":
        return img
    img = to_8bit(img)
    rgba = np.array(img.convert("RGBA"))
    if not (rgba[:, :, 3] < 255).any():
        return img.convert("RGB")
    alpha = rgba[:, :, 3:4] / 255.0
    rgb = (1 - alpha) * 255 + alpha * rgba[:, :, :3]
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Scale so the short side is ``size`` (LANCZOS, ``round``ed long side), then crop the central square."""
    Image = require_pil()
    w, h = img.size
    if min(w, h) <= 0:
        raise InputError(f"image has no pixels (size {w}x{h})", "pass a non-empty image")
    scale = size / min(w, h)
    img = img.resize((round(scale * w), round(scale * h)), Image.LANCZOS)
    x0, y0 = (img.width - size) // 2, (img.height - size) // 2
    return img.crop((x0, y0, x0 + size, y0 + size))


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 ``[3, H, W]`` in [-1, 1] (computed in float64 like the reference)."""
    arr = np.asarray(img, dtype=np.uint8) / 255.0 * 2 - 1
    return torch.from_numpy(arr).permute(2, 0, 1).float()


def preprocess(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """PIL images of any size and mode -> ``[B, 3, size, size]`` float32 in [-1, 1]."""
    if len(images) == 0:
        raise InputError("no images to encode", "pass at least one image")
    out = []
    for im in images:
        w, h = im.size
        if min(w, h) <= 0:
            raise InputError(f"image has no pixels (size {w}x{h})", "pass a non-empty image")
        try:
            rgb = whiten_transparency(im)
        except (ValueError, OSError) as e:  # a mode Pillow cannot convert to RGB(A)
            raise InputError(f"cannot convert a {im.mode!r} image to RGB ({e})",
                             "convert it to RGB first (img.convert('RGB'))") from None
        out.append(pil_to_tensor(resize_center_crop(rgb, size)))
    return torch.stack(out)


def tensor_to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` (or ``[3, H, W]``) model output -> uint8 ``[B, H, W, 3]`` (clamp, scale, truncate)."""
    x = images.detach().float().cpu()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    x = (torch.clamp(x, -1.0, 1.0) + 1.0) / 2.0
    return (x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """``[B, 3, H, W]`` (or ``[3, H, W]``) model output -> list of RGB PIL images."""
    Image = require_pil()
    return [Image.fromarray(a, "RGB") for a in tensor_to_uint8(images)]
