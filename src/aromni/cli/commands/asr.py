"""``aromni asr``: speech to text (greedy, official ASR prompt). Several files, folders or globs (or
``--input requests.jsonl``) run in batches and print one JSON line per input (see :mod:`aromni.cli.batch`)."""

from __future__ import annotations

import argparse

from aromni.cli import batch, common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("asr", help="transcribe audio files")
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
    if args.input is not None:
        requests = batch.read_requests(args.input, "audio")
    else:
        paths, is_batch = batch.expand_paths(args.audio, batch.AUDIO_SUFFIXES, "audio")
        if not is_batch and args.output is None:
            return run_one(args, paths[0])
        requests = [batch.Request(i, p) for i, p in enumerate(paths)]
    return batch.text_task(args, requests, "audio", lambda m, xs: m.asr(
        xs, instruction=args.instruction, options=common.overrides(args)), "asr")


def run_one(args: argparse.Namespace, audio: str) -> int:
    model = common.load_model(args)
    out = model.asr(audio, instruction=args.instruction, options=common.overrides(args))
    common.emit(args, {"audio": audio, "text": out.text, "stop_reason": out.stop_reason,
                       "seconds": round(out.seconds, 3)}, out.text)
    return 0
