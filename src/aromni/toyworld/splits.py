"""Held-out attribute combinations and split names.

Certain shape×colour pairs occur only in the test split (one pair per shape, every colour at most once, so
each shape and each colour still occurs in training). Test speech comes only from held-out voices
(:func:`aromni.toyworld.voices.voice_bank`). World version 2 also holds out colour×background and
shape×position pairs (:func:`heldout_pairs`).
"""

from __future__ import annotations

import random

from aromni.toyworld.attributes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, ImageAttrs

SPLITS = ("train", "validation", "test")
# Fraction of test images drawn from held-out shape×colour pairs (the rest use seen pairs, for comparison).
TEST_HELDOUT_FRACTION = 0.5


def heldout_combos(seed: int) -> list[tuple[str, str]]:
    """``[(shape, colour), ...]``: one pair per shape, distinct colours."""
    rng = random.Random(f"heldout-{seed}")
    colors = list(COLORS)
    rng.shuffle(colors)
    return [(shape, colors[i]) for i, shape in enumerate(SHAPES)]


def seen_combos(seed: int) -> list[tuple[str, str]]:
    held = set(heldout_combos(seed))
    return [(s, c) for s in SHAPES for c in COLORS if (s, c) not in held]


# ------------------------------------------------------------------------------------------ world version 2
#: The kinds of held-out attribute pair of version 2 (``meta.heldout_combo`` of a test image record).
HELDOUT_KINDS = ("shape_color", "color_background", "shape_position")
#: Which two attributes each kind pairs.
KIND_ATTRIBUTES: dict[str, tuple[str, str]] = {
    "shape_color": ("shape", "color"), "color_background": ("color", "background"),
    "shape_position": ("shape", "position"),
}


def heldout_pairs(seed: int) -> dict[str, list[tuple[str, str]]]:
    """Version 2's held-out pairs by kind: v1's shape×colour pairs, one colour per background (distinct
    colours) and one shape per position (distinct shapes), so every value still occurs in training."""
    rng = random.Random(f"heldout-v2-{seed}")
    colors = list(COLORS)
    rng.shuffle(colors)
    shapes = list(SHAPES)
    rng.shuffle(shapes)
    return {
        "shape_color": heldout_combos(seed),
        "color_background": [(colors[i], bg) for i, bg in enumerate(BACKGROUNDS)],
        "shape_position": [(shapes[i], pos) for i, pos in enumerate(POSITIONS)],
    }


def heldout_kinds(attrs: ImageAttrs, pairs: dict[str, list[tuple[str, str]]]) -> list[str]:
    """The kinds of held-out pair that ``attrs`` shows (empty: a combination training may use)."""
    values = attrs.to_dict()
    return [k for k in HELDOUT_KINDS if tuple(values[a] for a in KIND_ATTRIBUTES[k]) in set(pairs[k])]
