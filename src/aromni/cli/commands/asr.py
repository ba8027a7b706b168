"""``aromni asr``: speech to text (greedy, official ASR prompt). Several files, folders or globs (or
``--input requests.jsonl``) run in batches and print one JSON line per input (see :mod:`aromni.cli.batch`)."""

from __future__ import annotations

import argparse

from aromni.cli import batch, common
from aromni.inference.omni import OmniModel, TextOutput
from aromni.inference.options import DecodeOptions
from aromni.vocab.tasks import ASR


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(ASR.name, help="transcribe audio files")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", nargs="+", metavar="AUDIO",
                     help="audio file(s), folder(s) or glob(s) (wav, flac, ogg; any rate, mixed to mono)")
    batch.add_input_arg(src, "audio", '{"audio": "q1.wav"}')
    p.add_argument("--instruction", default=None, help="override the task instruction")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    common.add_task_args(p, images=False)
    batch.add_batch_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def call(model: OmniModel, options: DecodeOptions, x: str | list[str]) -> TextOutput | list[TextOutput]:
        return model.asr(x, instruction=args.instruction, options=options)

    return batch.media_to_text(args, "audio", batch.AUDIO_SUFFIXES, ASR, call)
