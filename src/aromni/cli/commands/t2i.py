"""``aromni t2i``: text to image (sampling with classifier-free guidance; official scales 3.07 / 1.32)."""

from __future__ import annotations

import argparse

from aromni.cli import common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("t2i", help="generate an image from text")
    p.add_argument("--text", required=True, help="what to draw")
    p.add_argument("--out", required=True, help="output image file (.png, .jpg, .webp)")
    p.add_argument("--instruction", default=None, help="override the task instruction")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    common.add_task_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = common.check_output_path(args.out, args.overwrite, (".png", ".jpg", ".jpeg", ".webp"))
    model = common.load_model(args)
    img = model.t2i(args.text, instruction=args.instruction, options=common.overrides(args))
    img.save(out, overwrite=True)
    common.emit(args, {"text": args.text, "out": str(out), "codes": len(img.codes), "complete": img.complete,
                       "stop_reason": img.stop_reason, "seconds": round(img.seconds, 3)},
                f"wrote {out} ({img.image.size[0]}x{img.image.size[1]})")
    return 0
