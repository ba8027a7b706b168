"""Procedural test images: one coloured shape on a plain background (what the toy world's images look like).

Two styles: ``toy`` (8 saturated shape colours on 4 neutral backgrounds, half-extent 8-15 px: the toy world's
kind of image, but anywhere on the canvas) and ``hard`` (12 colours, any pair as shape/background, half-extent
10-19 px). Used by the trainer tests and to measure reconstruction quality. Also a script::

    python tests/tokenizers/image/shapes.py --out /tmp/shapes --n 2000 [--style toy|hard] [--size 64] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "diamond", "hexagon", "cross")
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 210, 40),
          "purple": (140, 60, 180), "orange": (245, 140, 30), "cyan": (40, 200, 210), "white": (245, 245, 245),
          "black": (20, 20, 20), "gray": (128, 128, 128), "pink": (240, 130, 180), "brown": (130, 80, 40)}
TOY_COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink")
TOY_BACKGROUNDS = {"white": (245, 245, 245), "black": (20, 20, 20), "gray": (128, 128, 128),
                   "sand": (220, 200, 150)}


def _polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    def ring(n: int, radius: float, phase: float) -> list[tuple[float, float]]:
        return [(cx + radius * math.cos(phase + 2 * math.pi * i / n), cy + radius * math.sin(phase + 2 * math.pi * i / n))
                for i in range(n)]

    if kind == "triangle":
        return ring(3, r, -math.pi / 2)
    if kind == "diamond":
        return ring(4, r, 0.0)
    if kind == "hexagon":
        return ring(6, r, 0.0)
    if kind == "star":
        outer, inner = ring(5, r, -math.pi / 2), ring(5, r * 0.45, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if kind == "cross":
        t = r * 0.38
        return [(cx - t, cy - r), (cx + t, cy - r), (cx + t, cy - t), (cx + r, cy - t), (cx + r, cy + t),
                (cx + t, cy + t), (cx + t, cy + r), (cx - t, cy + r), (cx - t, cy + t), (cx - r, cy + t),
                (cx - r, cy - t), (cx - t, cy - t)]
    raise ValueError(kind)


def draw_shape(kind: str, fg: tuple[int, int, int], bg: tuple[int, int, int], cx: float, cy: float, r: float,
               size: int = 64) -> Image.Image:
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    if kind == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fg)
    elif kind == "square":
        d.rectangle((cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85), fill=fg)
    else:
        d.polygon(_polygon(kind, cx, cy, r), fill=fg)
    return img


def random_shape(rng: random.Random, size: int = 64, style: str = "hard") -> tuple[Image.Image, dict]:
    kind = rng.choice(SHAPES)
    if style == "toy":
        fg_name, bg_name = rng.choice(TOY_COLORS), rng.choice(sorted(TOY_BACKGROUNDS))
        fg, bg = COLORS[fg_name], TOY_BACKGROUNDS[bg_name]
        r = rng.uniform(0.125, 0.235) * size
    else:
        fg_name, bg_name = rng.sample(sorted(COLORS), 2)
        fg, bg = COLORS[fg_name], COLORS[bg_name]
        r = rng.uniform(0.16, 0.3) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    info = {"shape": kind, "color": fg_name, "background": bg_name, "cx": cx, "cy": cy, "r": r}
    return draw_shape(kind, fg, bg, cx, cy, r, size), info


def write_shapes(out: Path, n: int, *, size: int = 64, seed: int = 0, style: str = "hard") -> list[Path]:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img, info = random_shape(rng, size, style)
        p = out / f"{i:05d}_{info['color']}_{info['shape']}_on_{info['background']}.png"
        img.save(p)
        paths.append(p)
    return paths


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--style", choices=("toy", "hard"), default="toy")
    a = ap.parse_args()
    print(len(write_shapes(a.out, a.n, size=a.size, seed=a.seed, style=a.style)), "images in", a.out)
