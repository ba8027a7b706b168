"""``aromni t2i``: text to image (sampling with classifier-free guidance; official scales 3.07 / 1.32).

Several ``--text`` values (with ``--out-dir``) or ``--input requests.jsonl`` run in batches; see
:mod:`aromni.cli.batch`."""

from __future__ import annotations

import argparse
from pathlib import Path
from aromni.cli import batch, common
from aromni.errors import InputError
from aromni.inference.omni import ImageOutput, OmniModel
from aromni.utils.io import JSONValue
from aromni.vocab.tasks import T2I

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def register(sub: argparse._SubParsersAction) -> None:
    p = batch.add_text_to_media_parser(sub, T2I, "generate images from text", "what to draw (several: one image each)",
                                       '{"text": "a red circle", "out": "circle.png"}',
                                       "output image file (.png, .jpg, .webp) of a single --text")
    p.add_argument("--instruction", default=None, help="override the task instruction")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    common.add_task_args(p)
    batch.add_batch_args(p, media_out=".png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.input is None and len(args.text) == 1 and args.out_dir is None and args.output is None:
        if args.out is None:
            raise InputError("t2i needs --out FILE.png", "e.g. --out image.png")
        return run_one(args, args.text[0])
    requests = batch.planned_text_requests(args, SUFFIXES)

    def save(model: OmniModel, img: ImageOutput, path: Path) -> dict[str, JSONValue]:
        img.save(path, overwrite=True)
        return {"codes": len(img.codes), "complete": img.complete, "stop_reason": img.stop_reason}

    return batch.media_task(args, requests, T2I, lambda m, opts, texts: m.t2i(
        texts, instruction=args.instruction, options=opts), save)


def run_one(args: argparse.Namespace, text: str) -> int:
    out = common.check_output_path(args.out, args.overwrite, SUFFIXES)
    model = common.load_model(args)
    img = model.t2i(text, instruction=args.instruction, options=common.decode_options(args, T2I, model))
    img.save(out, overwrite=True)
    common.emit(args, {"text": text, "out": str(out), "codes": len(img.codes), "complete": img.complete,
                       "stop_reason": img.stop_reason, "seconds": round(img.seconds, 3)},
                f"wrote {out} ({img.image.size[0]}x{img.image.size[1]})")
    return 0
