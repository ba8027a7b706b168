import random

import numpy as np
import pytest

from aromni.toyworld.attributes import BACKGROUNDS, COLORS, POSITIONS, SIZES, ImageAttrs
from aromni.toyworld.images import RenderSpec, random_spec, render


def test_render_is_deterministic_and_64px():
    spec = random_spec(ImageAttrs("star", "blue", "big", "top left", "beige"), random.Random(0))
    a, b = np.asarray(render(spec)), np.asarray(render(RenderSpec.from_dict(spec.to_dict())))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)


@pytest.mark.parametrize("shape", ["circle", "square", "triangle", "star", "diamond", "cross"])
@pytest.mark.parametrize("position", list(POSITIONS))
def test_shape_sits_at_its_position_in_its_colour(shape, position):
    a = ImageAttrs(shape, "red", "big", position, "white")
    img = np.asarray(render(RenderSpec(a))).astype(int)
    bg, fg = np.array(BACKGROUNDS["white"]), np.array(COLORS["red"])
    assert np.abs(img[0, 0] - bg).max() <= 2 or position == "top left"
    fg_mask = np.abs(img - fg).max(-1) < 20
    ys, xs = np.nonzero(fg_mask)
    cx, cy = POSITIONS[position]
    assert abs(xs.mean() - cx) < 3 and abs(ys.mean() - cy) < 4
    assert fg_mask.sum() > 100


def test_big_shapes_cover_more_pixels_than_small():
    for shape in ("circle", "star", "cross"):
        area = {}
        for size in SIZES:
            img = np.asarray(render(RenderSpec(ImageAttrs(shape, "green", size, "middle", "black")))).astype(int)
            area[size] = (np.abs(img - np.array(BACKGROUNDS["black"])).max(-1) > 60).sum()
        assert area["big"] > 2 * area["small"]
