"""``aromni caption``: image to text (greedy, official caption prompt). Several files, folders or globs (or
``--input requests.jsonl``) run in batches and print one JSON line per input (see :mod:`aromni.cli.batch`)."""

from __future__ import annotations

import argparse

from aromni.cli import batch, common
from aromni.inference.omni import OmniModel, TextOutput
from aromni.inference.options import DecodeOptions
from aromni.vocab.tasks import CAPTION


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(CAPTION.name, help="describe images")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", nargs="+", metavar="IMAGE",
                     help="image file(s), folder(s) or glob(s) (png, jpeg, webp, ...)")
    batch.add_input_arg(src, "image", '{"image": "photo.png"}')
    p.add_argument("--instruction", default=None, help="override the task instruction")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    common.add_task_args(p, images=False)
    batch.add_batch_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def call(model: OmniModel, options: DecodeOptions, x: str | list[str]) -> TextOutput | list[TextOutput]:
        return model.caption(x, instruction=args.instruction, options=options)

    return batch.media_to_text(args, "image", batch.IMAGE_SUFFIXES, CAPTION, call)
