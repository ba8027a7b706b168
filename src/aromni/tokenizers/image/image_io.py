"""Reading and writing image files (Pillow), with one clear :class:`InputError` per way a file can be bad."""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from aromni.errors import InputError
from aromni.tokenizers.image.preprocess import require_pil, to_pil
from aromni.utils.io import atomic_path, path_kind

if TYPE_CHECKING:  # Pillow is an optional extra
    from PIL import Image

#: Largest image :func:`load_image` decodes by default (pixels; 8192 x 8192). Larger files are refused before
#: decoding, so a hostile or mistaken file cannot exhaust memory.
MAX_PIXELS = 8192 * 8192


def load_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an image file as a fully decoded PIL image, rotated upright by its EXIF orientation.

    The mode is kept (RGBA stays RGBA) so that :func:`~.preprocess.whiten_transparency` can blend alpha.
    Raises :class:`InputError` naming the file when it is missing, empty, not an image, truncated or corrupt,
    or larger than ``max_pixels`` (checked from the header, before any pixel is decoded; the message gives the
    image's size and the limit).
    """
    Image = require_pil()
    from PIL import ImageOps, UnidentifiedImageError

    path = Path(path)
    kind = path_kind(path)
    if kind == "missing":
        raise InputError(f"{path}: no such image file", "check the path")
    if kind != "file":
        raise InputError(f"{path}: not a file", "pass an image file, not a directory")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)", "re-create or re-download the image")
    try:
        with warnings.catch_warnings():
            # Our own limit (max_pixels) is the one that counts; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_pixels(path, img.size, max_pixels)
                img.load()  # decode now so truncation surfaces here, not later
                out = ImageOps.exif_transpose(img)
                out.load()
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file Pillow can read", "pass a PNG, JPEG, WebP, ... file") from None
    except Image.DecompressionBombError as e:
        size = _header_size(path)
        if size is not None:
            _check_pixels(path, size, max_pixels)
        what = f"is {size[0]}x{size[1]} pixels" if size is not None else f"is too large ({e})"
        raise InputError(f"{path}: image {what}, over Pillow's decompression-bomb limit of "
                         f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels",
                         "downscale it first (or raise PIL.Image.MAX_IMAGE_PIXELS)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as e:
        raise InputError(f"{path}: truncated or corrupt image ({_one_line(e)})",
                         "re-create or re-download the image") from None
    except MemoryError:
        raise InputError(f"{path}: not enough memory to decode this image", "downscale it first") from None
    if out.width == 0 or out.height == 0:
        raise InputError(f"{path}: image has no pixels ({out.width}x{out.height})")
    return out


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise InputError(f"{path}: image is {w}x{h} pixels ({w * h:,}), larger than the {max_pixels:,}-pixel limit",
                         "downscale it first (e.g. to 1024 pixels on the long side), or pass a larger max_pixels")


def _header_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the file's header, without Pillow's decompression-bomb check (``None`` if unknown).

    Pillow refuses to even open files over twice its ``MAX_IMAGE_PIXELS``; this reads the header the way
    ``Image.open`` does (the same format plugins) only to say how large the image is.
    """
    from PIL import Image

    Image.init()
    try:
        with open(path, "rb") as fp:
            prefix = fp.read(16)
            for fmt in Image.ID:
                factory, accept = Image.OPEN[fmt]
                ok = not accept or accept(prefix)
                if not ok or isinstance(ok, str):
                    continue
                fp.seek(0)
                try:
                    return tuple(factory(fp, str(path)).size)  # type: ignore[return-value]
                except Exception:  # noqa: BLE001 - another plugin may still read it
                    continue
    except OSError:
        return None
    return None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


def _format_for(path: Path) -> str:
    Image = require_pil()
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown image extension {path.suffix!r}", "use .png, .jpg, .webp, ...")
    return fmt


def save_image(img: Image.Image, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a PIL image (or model output ``[3, H, W]`` / ``[1, 3, H, W]``) atomically; format from the suffix.

    Refuses to replace an existing file unless ``overwrite=True``.
    """
    path = Path(path)
    if isinstance(img, torch.Tensor):
        if img.dim() not in (3, 4) or (img.dim() == 4 and img.shape[0] != 1) or img.shape[-3] != 3:
            raise InputError(f"save_image takes one image [3, H, W] or [1, 3, H, W], got shape {list(img.shape)}",
                             "save a batch one image at a time")
        img = to_pil(img)[0]
    if not (hasattr(img, "save") and hasattr(img, "mode") and hasattr(img, "size")):
        raise InputError(f"save_image takes a PIL image or an image tensor, got {type(img).__name__}")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a directory", "pass a file path such as out.png")
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists", "choose another path or pass overwrite=True (--overwrite)")
    fmt = _format_for(path)
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")  # JPEG has no alpha channel
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:
            img.save(tmp, format=fmt)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or _one_line(e)}",
                         "check that the directory exists and is writable, and the format suits the image") from None
    return path
