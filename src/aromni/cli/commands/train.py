"""``aromni train {pretrain,sft,synth-data}``: the training recipes and a synthetic smoke-test corpus.

::

    aromni train pretrain --config configs/train/pretrain_tiny.yaml optim.max_steps=200 out=runs/tiny
    aromni train sft --config configs/train/sft_tiny.yaml model.init_from=runs/tiny/bundle
    torchrun --nproc_per_node 2 -m aromni train pretrain --config ... dist.strategy=fsdp
    aromni train synth-data --out data/synth --n-train 4000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aromni.errors import InputError
from aromni.training.data.synthetic import write_synthetic_shards
from aromni.training.recipes import pretrain, sft
from aromni.training.trainer import Trainer


def _recipe(name: str):
    def handler(args: argparse.Namespace) -> int:
        module = {"pretrain": pretrain, "sft": sft}[name]
        cfg = module.config(args.config, args.overrides)
        if args.print_config:
            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        last = Trainer(cfg).fit()
        if last:
            print(json.dumps({k: v for k, v in last.items() if k != "samples"}))
        return 0

    return handler


def _synth(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise InputError(f"{out} already exists and is not empty", "choose another --out or pass --overwrite")
    world = write_synthetic_shards(out, n_train=args.n_train, n_val=args.n_val, seed=args.seed)
    print(f"wrote {args.n_train} train / {args.n_val} validation samples to {out} "
          f"(layout {world.layout.vocab_size} ids; perceptual table {out / 'image_codebook.safetensors'})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a model (pretrain / sft recipes)",
                              description="Train with a recipe. Settings come from --config YAML and key=value "
                                          "overrides (dotted paths, e.g. optim.lr=1e-4).")
    sub = p.add_subparsers(dest="recipe", metavar="RECIPE", required=True)
    for name, text in (("pretrain", "stage 1: loss on every token, weighted NTP + perceptual loss"),
                       ("sft", "stage 2: loss on response tokens only")):
        r = sub.add_parser(name, help=text, description=text)
        r.add_argument("--config", "-c", help="recipe YAML (see configs/train/)")
        r.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.max_steps=100")
        r.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        r.set_defaults(func=_recipe(name))
    s = sub.add_parser("synth-data", help="write a small synthetic tri-modal shard set (smoke tests, docs)")
    s.add_argument("--out", required=True, help="output shard directory")
    s.add_argument("--n-train", type=int, default=4000)
    s.add_argument("--n-val", type=int, default=200)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_synth)
