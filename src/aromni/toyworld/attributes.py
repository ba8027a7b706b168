"""The world's closed attribute vocabulary: shapes, colours, sizes, positions, backgrounds.

Colours are saturated and hue-spaced, backgrounds are neutral, so that every (colour, background) pair stays
distinguishable after an 8×8-code VQGAN blurs and shifts colours a little.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: The world version ``build_world`` makes by default; 1 is the closed-grammar world of the shipped bundle.
WORLD_VERSION = 2
WORLD_VERSIONS = (1, 2)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")

# name -> sRGB. Chosen far apart in hue and lightness; none is close to a background.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 215, 25),
    "green": (30, 165, 55),
    "cyan": (20, 195, 210),
    "blue": (35, 70, 225),
    "purple": (135, 45, 180),
    "pink": (250, 120, 190),
}

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "beige": (222, 200, 150),
}

# Half-extent of the shape's bounding box in pixels (64×64 canvas).
SIZES: dict[str, float] = {"small": 9.0, "big": 14.0}

# Canonical position name -> centre (x, y) in pixels.
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (16.0, 16.0),
    "top right": (48.0, 16.0),
    "middle": (32.0, 32.0),
    "bottom left": (16.0, 48.0),
    "bottom right": (48.0, 48.0),
}

# How each position is said after a preposition ("at the top left", "in the middle").
POSITION_PHRASES: dict[str, str] = {
    "top left": "at the top left",
    "top right": "at the top right",
    "middle": "in the middle",
    "bottom left": "at the bottom left",
    "bottom right": "at the bottom right",
}

# Corners/points per shape, for the world's facts ("a square has four corners").
CORNERS: dict[str, str] = {
    "circle": "no",
    "square": "four",
    "triangle": "three",
    "star": "ten",
    "diamond": "four",
    "cross": "twelve",
}

ATTRIBUTE_NAMES = ("shape", "color", "size", "position", "background")


@dataclass(frozen=True)
class ImageAttrs:
    """What one image shows. ``position`` is a key of :data:`POSITIONS`."""

    shape: str
    color: str
    size: str
    position: str
    background: str

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("shape", self.shape, SHAPES),
            ("color", self.color, COLORS),
            ("size", self.size, SIZES),
            ("position", self.position, POSITIONS),
            ("background", self.background, BACKGROUNDS),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; expected one of {list(allowed)}")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def vocabulary() -> dict[str, list[str]]:
    """The attribute vocabulary as plain lists (what the manifest records)."""
    return {
        "shape": list(SHAPES),
        "color": list(COLORS),
        "size": list(SIZES),
        "position": list(POSITIONS),
        "background": list(BACKGROUNDS),
    }
