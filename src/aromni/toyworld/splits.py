"""Held-out attribute combinations and split names.

Certain shape×colour pairs occur only in the test split (one pair per shape, every colour at most once, so each
shape and each colour still occurs in training). Test speech comes only from held-out voices
(:func:`aromni.toyworld.voices.voice_bank`).
"""

from __future__ import annotations

import random

from aromni.toyworld.attributes import COLORS, SHAPES

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
