"""``aromni asr``: speech to text (greedy, official ASR prompt)."""

from __future__ import annotations

import argparse

from aromni.cli import common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("asr", help="transcribe an audio file")
    p.add_argument("--audio", required=True, help="audio file (wav, flac, ogg; any rate, mixed to mono)")
    p.add_argument("--instruction", default=None, help="override the task instruction")
    common.add_task_args(p, images=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = common.load_model(args)
    out = model.asr(args.audio, instruction=args.instruction, options=common.overrides(args))
    common.emit(args, {"audio": args.audio, "text": out.text, "stop_reason": out.stop_reason,
                       "seconds": round(out.seconds, 3)}, out.text)
    return 0
