"""Rendering one shape on a plain background: 64×64 RGB, anti-aliased by drawing at 4× and downsampling.

A render is fully described by :class:`RenderSpec` (attributes plus the small jitters drawn by the planner), so
the same spec always gives the same pixels, whichever worker process draws it.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

from aromni.toyworld.attributes import BACKGROUNDS, COLORS, POSITIONS, SIZES, ImageAttrs

IMAGE_SIZE = 64
SUPERSAMPLE = 4
# Jitter ranges: centre offset (px), half-extent offset (px), per-channel colour offset.
CENTER_JITTER = 2.0
SIZE_JITTER = 1.0
COLOR_JITTER = 8


@dataclass(frozen=True)
class RenderSpec:
    attrs: ImageAttrs
    dx: float = 0.0
    dy: float = 0.0
    dr: float = 0.0
    shape_rgb_offset: tuple[int, int, int] = (0, 0, 0)
    bg_rgb_offset: tuple[int, int, int] = (0, 0, 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attrs"] = self.attrs.to_dict()
        return d

    @staticmethod
    def from_dict(d: dict) -> RenderSpec:
        return RenderSpec(
            attrs=ImageAttrs(**d["attrs"]),
            dx=d["dx"], dy=d["dy"], dr=d["dr"],
            shape_rgb_offset=tuple(d["shape_rgb_offset"]), bg_rgb_offset=tuple(d["bg_rgb_offset"]),
        )


def random_spec(attrs: ImageAttrs, rng: random.Random) -> RenderSpec:
    """Draw the jitters for ``attrs`` (rounded so specs serialise exactly)."""

    def off() -> tuple[int, int, int]:
        return tuple(rng.randint(-COLOR_JITTER, COLOR_JITTER) for _ in range(3))  # type: ignore[return-value]

    return RenderSpec(
        attrs=attrs,
        dx=round(rng.uniform(-CENTER_JITTER, CENTER_JITTER), 2),
        dy=round(rng.uniform(-CENTER_JITTER, CENTER_JITTER), 2),
        dr=round(rng.uniform(-SIZE_JITTER, SIZE_JITTER), 2),
        shape_rgb_offset=off(),
        bg_rgb_offset=off(),
    )


def _clip_rgb(rgb: tuple[int, int, int], off: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + o)) for c, o in zip(rgb, off))  # type: ignore[return-value]


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        rad = r if i % 2 == 0 else 0.45 * r
        ang = -math.pi / 2 + i * math.pi / 5
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    return pts


def _cross(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    w = 0.38 * r
    return [
        (cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w), (cx + r, cy + w), (cx + w, cy + w),
        (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w), (cx - r, cy + w), (cx - r, cy - w), (cx - w, cy - w),
    ]


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Vertices of ``shape`` with bounding half-extent ``r`` (``None`` for the circle, drawn as an ellipse)."""
    if shape == "circle":
        return None
    if shape == "square":
        s = 0.85 * r  # a full-extent square looks much bigger than a circle of the same extent
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)]
    if shape == "star":
        return _star(cx, cy, r)
    if shape == "cross":
        return _cross(cx, cy, r)
    raise ValueError(f"unknown shape {shape!r}")


def render(spec: RenderSpec):
    """Draw ``spec`` -> a 64×64 RGB ``PIL.Image``."""
    from PIL import Image, ImageDraw

    a = spec.attrs
    k = SUPERSAMPLE
    bg = _clip_rgb(BACKGROUNDS[a.background], spec.bg_rgb_offset)
    fg = _clip_rgb(COLORS[a.color], spec.shape_rgb_offset)
    img = Image.new("RGB", (IMAGE_SIZE * k, IMAGE_SIZE * k), bg)
    draw = ImageDraw.Draw(img)
    x, y = POSITIONS[a.position]
    cx, cy, r = (x + spec.dx) * k, (y + spec.dy) * k, (SIZES[a.size] + spec.dr) * k
    poly = shape_polygon(a.shape, cx, cy, r)
    if poly is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    else:
        draw.polygon(poly, fill=fg)
    return img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
