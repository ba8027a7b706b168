"""load_image / save_image: every bad file is one clear InputError naming it; EXIF rotation; atomic saves."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from aromni.errors import InputError
from aromni.tokenizers.image.image_io import load_image, save_image


def png_bytes(w: int = 20, h: int = 10) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)  # noisy pixels so the compressed stream is long enough to cut
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.png: no such image file"):
        load_image(tmp_path / "nope.png")


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(InputError, match="not a file"):
        load_image(tmp_path)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.png: empty file"):
        load_image(p)


def test_non_image_bytes(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is text, not a PNG\n" * 20)
    with pytest.raises(InputError, match=r"notes\.png: not an image file"):
        load_image(p)


def test_truncated_png(tmp_path):
    data = png_bytes(64, 64)
    p = tmp_path / "cut.png"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.png: truncated or corrupt"):
        load_image(p)


def test_too_large_states_the_limit(tmp_path):
    p = tmp_path / "big.png"
    p.write_bytes(png_bytes(100, 60))
    with pytest.raises(InputError,
                       match=r"big\.png: image is 100x60 pixels \(6,000\), larger than the 5,000-pixel limit"):
        load_image(p, max_pixels=5000)
    assert load_image(p, max_pixels=6000).size == (100, 60)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (30, 10), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif.tobytes())
    with Image.open(p) as raw:
        assert raw.size == (30, 10)
    assert load_image(p).size == (10, 30)


def test_alpha_mode_is_kept(tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGBA", (4, 4), (1, 2, 3, 100)).save(p)
    assert load_image(p).mode == "RGBA"


def test_save_round_trip_refusal_and_tensor_input(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    p = tmp_path / "sub" / "x.png"
    save_image(Image.fromarray(arr, "RGB"), p)
    assert np.array_equal(np.asarray(load_image(p)), arr)
    with pytest.raises(InputError, match="already exists"):
        save_image(Image.fromarray(arr, "RGB"), p)
    save_image(torch.ones(1, 3, 8, 12), p, overwrite=True)  # model output in [-1, 1]
    assert np.all(np.asarray(load_image(p)) == 255)
    assert [f.name for f in p.parent.iterdir()] == ["x.png"]  # no temporary files left behind
    with pytest.raises(InputError, match="unknown image extension"):
        save_image(Image.fromarray(arr, "RGB"), tmp_path / "x.nope")
