"""Issue 11, T2I volume: a world of many T2I requests, each on an image of its own, and its shards.

    python benchmarks/toy_images/t2i_volume.py world OUT N [--seed 0] [--workers 2]
    python benchmarks/toy_images/t2i_volume.py shards WORLD OUT --tokenizers TOKDIR [--with V2WORLD]

``world`` builds a version-2 world of ``N`` training T2I records (and 300 validation, 4 test) and nothing else:
no speech, so it takes about a minute for 100,000. The held-out pairs and phrasings depend on the seed alone, so
a model trained on it is scored on a preset world of the same seed (``aromni eval --world V2WORLD --tasks t2i``).

``shards`` tokenises it with a recipe run's tokenizers (``TOKDIR/{text,image,speech}``) at the recipe's shard
settings. ``--with V2WORLD`` adds every record of that world, so one shard set serves a mixed stage 1 (use
``data.mixing.by: task`` there, or the T2I requests crowd out the other image tasks).
"""

import argparse
import json
import time

from aromni.toyworld.build import build_world
from aromni.toyworld.recipe import shard_config
from aromni.toyworld.sizes import TASKS, WorldSize
from aromni.toyworld.splits import SPLITS
from aromni.training.data.build import build


def t2i_world(out: str, n: int, seed: int, workers: int) -> dict:
    counts = {"train": n, "validation": 300, "test": 4}
    records = {t: dict.fromkeys(SPLITS, 0) for t in TASKS}
    records["t2i"] = dict(counts)
    return build_world(out, size=WorldSize(f"t2i-{n}", counts, records), seed=seed, workers=workers)


def shards(world: str, out: str, tokenizers: str, with_world: str | None) -> dict:
    records = [f"{world}/records/train.jsonl", f"{world}/records/validation.jsonl"]
    if with_world:
        records.insert(0, f"{with_world}/records/*.jsonl")
    return build(shard_config(records, tokenizers), out=out, overwrite=True, progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("world")
    w.add_argument("out")
    w.add_argument("n", type=int)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--workers", type=int, default=2)
    s = sub.add_parser("shards")
    s.add_argument("world")
    s.add_argument("out")
    s.add_argument("--tokenizers", required=True)
    s.add_argument("--with", dest="with_world")
    args = ap.parse_args()
    t = time.perf_counter()
    if args.cmd == "world":
        m = t2i_world(args.out, args.n, args.seed, args.workers)
        summary = {"records": m["records"], "images": m["images"]}
    else:
        m = shards(args.world, args.out, args.tokenizers, args.with_world)
        summary = {split: {task: v["rows"] for task, v in info["tasks"].items()} for split, info in m["splits"].items()}
    print(json.dumps({"seconds": round(time.perf_counter() - t, 1), **summary}))


if __name__ == "__main__":
    main()
