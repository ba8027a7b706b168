"""``aromni convert SRC DST --to FORMAT``: rewrite a decoder checkpoint in another layout.

The source layout is detected (aromni, hf, hf-anole, meta). Between the two HF layouts the non-architecture
config fields (``vocabulary_map``, ``vq_config``, token ids) and the ``model.vqmodel.*`` image-encoder weights are
carried over; other conversions write the decoder only. ``DST`` is built in a temporary sibling directory and
moved into place at the end, so a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from aromni.cli.common import positive_float, positive_int
from aromni.errors import InputError
from aromni.models.checkpoint import detect_format, load_decoder, save_checkpoint
from aromni.models.checkpoint.aromni_format import read_config
from aromni.models.checkpoint.hf_format import hf_extras
from aromni.models.checkpoint.meta_format import meta_num_shards
from aromni.utils.io import atomic_dir

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
TARGETS = ("aromni", "hf", "hf-anole", "meta")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("convert", help="convert a decoder checkpoint between aromni / HF / Anole / Meta layouts",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="checkpoint directory (or a file inside it); the layout is detected")
    p.add_argument("dst", help="output directory (must not exist or be empty unless --overwrite)")
    p.add_argument("--to", required=True, choices=TARGETS, help="output layout")
    p.add_argument("--dtype", choices=sorted(DTYPES), help="cast floating-point weights (default: keep)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DST")
    p.add_argument("--shards", type=positive_int, default=None,
                   help="meta only: model-parallel shards to write (default: the source's count, else 1)")
    p.add_argument("--max-shard-gb", type=positive_float, default=5.0,
                   help="hf/hf-anole only: split safetensors files above this size (default 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    src, dst = Path(args.src), Path(args.dst)
    if dst.exists() and src.exists() and dst.resolve() == (src.parent if src.is_file() else src).resolve():
        raise InputError(f"{dst}: the output directory is the source checkpoint", "write to another directory")
    if dst.exists() and not dst.is_dir():
        raise InputError(f"{dst}: exists and is not a directory", "choose another output path")
    if dst.exists() and any(dst.iterdir()) and not args.overwrite:
        raise InputError(f"{dst} already exists and is not empty", "choose another path or pass --overwrite")
    if args.shards is not None and args.to != "meta":
        raise InputError("--shards applies to --to meta only", "drop --shards")
    fmt = detect_format(src)
    dtype = DTYPES[args.dtype] if args.dtype else None
    decoder = load_decoder(src, dtype=dtype, format=fmt)

    options: dict = {}
    if args.to in ("hf", "hf-anole"):
        options["max_shard_bytes"] = int(args.max_shard_gb * 2**30)
        if fmt in ("hf", "hf-anole"):
            extra_config, extra_tensors = hf_extras(src if src.is_dir() else src.parent)
            options |= {"extra_config": extra_config,
                        "extra_tensors": ((k, t.to(dtype) if dtype is not None and t.is_floating_point() else t)
                                          for k, t in extra_tensors)}
    elif args.to == "meta":
        options["num_shards"] = args.shards or (meta_num_shards(src if src.is_dir() else src.parent)
                                                if fmt == "meta" else 1)
    elif args.to == "aromni" and fmt == "aromni":
        _, raw = read_config(src if src.is_dir() else src.parent)
        options["extra"] = {k: v for k, v in raw.items() if k not in ("format", "decoder")}
    with atomic_dir(dst, overwrite=args.overwrite) as tmp:
        save_checkpoint(decoder, tmp, args.to, dtype=dtype, **options)
    cfg = decoder.cfg
    print(f"converted {src} ({fmt}, {cfg.n_layers} layers, dim {cfg.dim}, {decoder.embed.weight.dtype}) "
          f"-> {dst} ({args.to})")
    return 0
