"""``aromni asr``: speech to text (greedy, official ASR prompt). Several files, folders or globs (or
``--input requests.jsonl``) run in batches and print one JSON line per input (see :mod:`aromni.cli.batch`)."""

from __future__ import annotations

import argparse

from aromni.cli import batch
from aromni.inference.omni import OmniModel, TextOutput
from aromni.inference.options import DecodeOptions
from aromni.vocab.tasks import ASR


def register(sub: argparse._SubParsersAction) -> None:
    p = batch.add_media_to_text_parser(
        sub, ASR, "audio", "transcribe audio files",
        "audio file(s), folder(s) or glob(s) (wav, flac, ogg; any rate, mixed to mono)",
        '{"audio": "q1.wav"}')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def call(model: OmniModel, options: DecodeOptions, x: str | list[str]) -> TextOutput | list[TextOutput]:
        return model.asr(x, instruction=args.instruction, options=options)

    return batch.media_to_text(args, "audio", batch.AUDIO_SUFFIXES, ASR, call)
