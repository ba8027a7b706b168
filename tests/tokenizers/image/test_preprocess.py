"""Pre/post-processing against hand computations of official-formats.md §B.2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from aromni.tokenizers.image.preprocess import (pil_to_tensor, preprocess, resize_center_crop, tensor_to_uint8,
                                                to_pil, whiten_transparency)


def test_alpha_is_blended_onto_white_with_truncation():
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 100, 0, 128)  # (1 - 128/255) * 255 + 128/255 * c = 127 + 0.50196 c
    rgba[0, 1] = (10, 20, 30, 0)  # fully transparent -> white
    rgba[0, 2] = (10, 20, 30, 255)  # opaque -> unchanged
    rgba[1, :] = (0, 0, 0, 1)  # 254 + 1/255 * 0 = 254.0
    out = np.asarray(whiten_transparency(Image.fromarray(rgba, "RGBA")))
    assert out.shape == (2, 3, 3)
    assert tuple(out[0, 0]) == (227, 177, 127)  # 227.39, 177.20, 127.0 truncated
    assert tuple(out[0, 1]) == (255, 255, 255)
    assert tuple(out[0, 2]) == (10, 20, 30)
    assert tuple(out[1, 0]) == (254, 254, 254)


def test_opaque_and_other_modes_convert_without_blending():
    rgba = np.full((4, 4, 4), 255, dtype=np.uint8)
    rgba[..., :3] = 7
    img = whiten_transparency(Image.fromarray(rgba, "RGBA"))
    assert img.mode == "RGB" and np.all(np.asarray(img) == 7)
    gray = whiten_transparency(Image.fromarray(np.full((3, 5), 90, dtype=np.uint8), "L"))
    assert gray.mode == "RGB" and np.all(np.asarray(gray) == 90)
    rgb = Image.new("RGB", (2, 2), (1, 2, 3))
    assert whiten_transparency(rgb) is rgb


@pytest.mark.parametrize("w,h,expect_resized", [(50, 30, (27, 16)), (30, 45, (16, 24)), (16, 16, (16, 16)),
                                                (33, 17, (31, 16))])
def test_short_side_lanczos_resize_and_center_crop(w, h, expect_resized):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    # By hand: scale = 16 / min(w, h), new side = round(scale * side), LANCZOS, crop at ((W-16)//2, (H-16)//2).
    scale = 16 / min(w, h)
    size = (round(scale * w), round(scale * h))
    assert size == expect_resized
    big = img.resize(size, Image.LANCZOS)
    x0, y0 = (size[0] - 16) // 2, (size[1] - 16) // 2
    ref = np.asarray(big)[y0:y0 + 16, x0:x0 + 16]
    out = resize_center_crop(img, 16)
    assert out.size == (16, 16) and np.array_equal(np.asarray(out), ref)


def test_tensor_range_and_layout():
    arr = np.zeros((2, 2, 3), dtype=np.uint8)
    arr[0, 1] = (0, 128, 255)
    t = pil_to_tensor(Image.fromarray(arr, "RGB"))
    assert t.shape == (3, 2, 2) and t.dtype == torch.float32
    assert t[0, 0, 1] == -1.0 and t[2, 0, 1] == 1.0 and t[0, 0, 0] == -1.0
    assert t[1, 0, 1] == torch.tensor(np.float32(128 / 255.0 * 2 - 1))  # float64 math, then float32


def test_full_preprocess_equals_the_composed_steps():
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (40, 24, 4), dtype=np.uint8)
    img = Image.fromarray(rgba, "RGBA")
    x = preprocess([img, img.convert("RGB")], 16)
    assert x.shape == (2, 3, 16, 16)
    assert torch.equal(x[0], pil_to_tensor(resize_center_crop(whiten_transparency(img), 16)))
    assert not torch.equal(x[0], x[1])  # the alpha channel mattered


def test_postprocess_clamps_and_truncates():
    vals = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0, 0.5])
    # (clamp(x) + 1) / 2 * 255 then astype(uint8): 0, 0, 127.5->127, 254.87->254, 255, 255, 191.25->191
    x = vals.view(1, 1, 1, 7).expand(1, 3, 1, 7)
    u8 = tensor_to_uint8(x)
    assert u8.shape == (1, 1, 7, 3) and u8.dtype == np.uint8
    assert u8[0, 0, :, 0].tolist() == [0, 0, 127, 254, 255, 255, 191]
    pil = to_pil(x[0])[0]
    assert pil.mode == "RGB" and pil.size == (7, 1)
    assert np.array_equal(np.asarray(pil), u8[0])


def test_round_trip_of_uint8_images_through_the_range_is_lossless():
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    t = pil_to_tensor(Image.fromarray(arr, "RGB"))
    # x/255*2-1 then (x+1)/2*255 truncation loses some values to float rounding; rounding never does.
    back = ((t.double() + 1) / 2 * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(back, arr)
