"""``aromni import-official``: build a bundle from the official AR-Omni release (decoder, text tokenizer,
Chameleon VQGAN) and a WavTokenizer yaml + ckpt."""

from __future__ import annotations

import argparse

from aromni.cli import common
from aromni.inference.official_import import import_official
from aromni.inference.omni import parse_dtype


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-official", help="convert the official AR-Omni release into a bundle")
    p.add_argument("--aromni", required=True, help="release root: models/7b (or HF files) + tokenizer/")
    p.add_argument("--wavtokenizer-config", required=True, help="WavTokenizer yaml (e.g. the small 600-24k one)")
    p.add_argument("--wavtokenizer-ckpt", required=True, help="WavTokenizer .ckpt")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--decoder", default=None, help="decoder checkpoint elsewhere (an HF Chameleon directory)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="store the weights in this dtype (default: as in the release)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle directory")
    common.add_output_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet = args.json
    out = import_official(args.aromni, args.wavtokenizer_config, args.wavtokenizer_ckpt, args.out,
                          decoder=args.decoder, dtype=parse_dtype(args.dtype), overwrite=args.overwrite,
                          log=(lambda s: None) if quiet else print)
    common.emit(args, {"bundle": str(out)}, f"bundle ready: {out}")
    return 0
