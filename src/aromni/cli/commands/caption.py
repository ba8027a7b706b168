"""``aromni caption``: image to text (greedy, official caption prompt)."""

from __future__ import annotations

import argparse

from aromni.cli import common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("caption", help="describe an image")
    p.add_argument("--image", required=True, help="image file (png, jpeg, webp, ...)")
    p.add_argument("--instruction", default=None, help="override the task instruction")
    common.add_task_args(p, images=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = common.load_model(args)
    out = model.caption(args.image, instruction=args.instruction, options=common.overrides(args))
    common.emit(args, {"image": args.image, "text": out.text, "stop_reason": out.stop_reason,
                       "seconds": round(out.seconds, 3)}, out.text)
    return 0
