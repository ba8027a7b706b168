"""Write n jittered toy-world renders as PNGs (VQGAN training data for the issue-11 experiments).

python benchmarks/toy_images/render_pngs.py OUT N
"""
import random
import sys
from pathlib import Path

from aromni.toyworld.attributes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES, ImageAttrs
from aromni.toyworld.images import random_spec, render

out, n = Path(sys.argv[1]), int(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
rng = random.Random("i11-vqgan-train")
for i in range(n):
    a = ImageAttrs(shape=rng.choice(SHAPES), color=rng.choice(list(COLORS)), size=rng.choice(list(SIZES)),
                   position=rng.choice(list(POSITIONS)), background=rng.choice(list(BACKGROUNDS)))
    render(random_spec(a, rng)).save(out / f"{i:05d}.png")
