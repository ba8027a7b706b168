"""Images on the wire: ``data:`` URLs -> PIL images (size-checked before decoding), PIL images -> PNG base64.

Only ``data:image/...;base64,...`` URLs are accepted: the server never fetches a URL or opens a path given by a
request. An image larger than the server's ``max_image_pixels`` is refused from its header, so a hostile file
cannot make the server decode gigapixels.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from typing import TYPE_CHECKING

from aromni.errors import InputError
from aromni.serve.audio_codec import b64, b64decode
from aromni.utils.extras import optional

if TYPE_CHECKING:  # Pillow is an optional extra
    from PIL import Image

_DATA_URL = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,", re.ASCII)


def decode_data_url(url: str, max_pixels: int, what: str = "the image") -> Image.Image:
    """A ``data:image/...;base64,`` URL -> an RGB PIL image, upright by its EXIF orientation.

    Raises :class:`InputError` for another kind of URL, bad base64, bytes Pillow cannot read, or an image over
    ``max_pixels`` (naming the limit)."""
    head = _DATA_URL.match(url)
    if head is None:
        shown = url[:40] + ("..." if len(url) > 40 else "")
        raise InputError(f"{what} must be a data URL (data:image/png;base64,...), got {shown!r}",
                         "embed the image bytes; this server fetches no URLs")
    return decode_image(b64decode(url[head.end():], what), max_pixels, what)


def decode_image(data: bytes, max_pixels: int, what: str = "the image") -> Image.Image:
    """Image file bytes -> an RGB PIL image (see :func:`decode_data_url`)."""
    pil = optional("PIL.Image", extra="image", feature="reading uploaded images")
    ops = optional("PIL.ImageOps", extra="image", feature="reading uploaded images")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pil.DecompressionBombWarning)  # our own limit is checked below
            with pil.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise InputError(f"{what} is {w}x{h} pixels ({w * h:,}), over this server's limit of "
                                     f"{max_pixels:,} pixels (max_image_pixels)",
                                     "downscale it first (e.g. to 1024 pixels on the long side)")
                img.load()
                out = ops.exif_transpose(img).convert("RGB")
    except InputError:
        raise
    except pil.DecompressionBombError:
        raise InputError(f"{what} is too large to decode (over Pillow's decompression-bomb limit)",
                         "downscale it first") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as e:
        raise InputError(f"{what} is not an image Pillow can read ({' '.join(str(e).split())[:120]})",
                         "send a PNG, JPEG or WebP image") from None
    if out.width == 0 or out.height == 0:
        raise InputError(f"{what} has no pixels", "send a non-empty image")
    return out


def png_b64(image: Image.Image) -> str:
    """A PIL image -> base64 of its PNG file."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return b64(buf.getvalue())


def png_data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + png_b64(image)
