"""``aromni chat``: run dialogs from a file (official ``inference_chat.py`` schema and output layout), or talk
interactively (no ``--input``).

Interactive commands: a plain line is a text turn; ``/image PATH`` attaches an image to the next turn;
``/audio PATH`` sends a spoken turn (with any attached images); ``/reset`` clears the history; ``/quit`` exits.
Images and speech in replies are written to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any, TextIO

from aromni.cli import common
from aromni.errors import AromniError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="multi-turn chat: a dialog file (--input) or an interactive session")
    p.add_argument("--input", default=None, help="dialogs as JSON/JSONL in the official inference_chat.py schema")
    p.add_argument("--output-dir", default=None, help="where outputs go (required with --input; REPL: chat_out)")
    p.add_argument("--base-dir", default=None, help="resolve relative paths in the input against this folder "
                   "(default: the input file's folder)")
    p.add_argument("--save-tokens", action="store_true", help="also write output_tokens.json per turn")
    p.add_argument("--append-text", default=None,
                   help="instruction appended to each interactive turn (default: the official one; '' for none)")
    common.add_task_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.input is not None:
        return run_file(args)
    return run_repl(args, sys.stdin, sys.stdout)


def run_file(args: argparse.Namespace) -> int:
    from aromni.inference.dialogs import DialogRunner, normalize_dialogs, read_dialog_file

    if not args.output_dir:
        raise AromniError("--input needs --output-dir", "e.g. --output-dir chat_out")
    dialogs = normalize_dialogs(read_dialog_file(args.input), args.input)
    model = common.load_model(args)
    opts = model.options("chat", common.overrides(args))
    base = args.base_dir or str(Path(args.input).resolve().parent)
    runner = DialogRunner(model, args.output_dir, base_dir=base, options=opts, save_tokens=args.save_tokens)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        log = runner.run(dialogs)
    failed = [m for m in log if m.get("error")]
    payload = {"output_dir": args.output_dir, "turns": len(log), "failed": len(failed),
               "batch_log": str(Path(args.output_dir) / "batch_log.json")}
    human = f"{len(log)} turn(s), {len(failed)} failed; log: {payload['batch_log']}"
    for m in failed:
        human += f"\n  {m['dialog_id']} turn {m['turn_index']}: {m['error']}"
    common.emit(args, payload, human)
    return 1 if failed else 0


def run_repl(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    model = common.load_model(args)
    out_dir = Path(args.output_dir or "chat_out")
    kw: dict[str, Any] = {} if args.append_text is None else {"append_text": args.append_text}
    session = model.chat(options=common.overrides(args), **kw)
    images: list[str] = []
    print("aromni chat: type a message; /image PATH, /audio PATH, /reset, /quit", file=stdout)
    for raw in stdin:
        line = raw.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            session.reset()
            images.clear()
            print("(history cleared)", file=stdout)
            continue
        if line.startswith("/image "):
            images.append(line[len("/image "):].strip())
            print(f"(image attached: {images[-1]})", file=stdout)
            continue
        turn: dict[str, Any] = {"images": list(images)}
        if line.startswith("/audio "):
            turn["audio"] = line[len("/audio "):].strip()
        elif line.startswith("/"):
            print(f"error: unknown command {line.split()[0]} (use /image, /audio, /reset, /quit)", file=stdout)
            continue
        else:
            turn["text"] = line
        try:
            _reply(session, model, turn, out_dir, stdout)
            images.clear()
        except AromniError as e:
            print(f"error: {e}", file=stdout)
    return 0


def _reply(session: Any, model: Any, turn: dict[str, Any], out_dir: Path, stdout: TextIO) -> None:
    from aromni.inference.media import save_png, save_wav

    uid = uuid.uuid4().hex[:8]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        events = session.stream(**turn)
        print("assistant: ", end="", file=stdout)
        for k, ev in enumerate(events, 1):
            if ev.kind == "text":
                print(ev.value, end="", file=stdout, flush=True)
            elif ev.kind == "image":
                path = save_png(ev.value, out_dir / f"{uid}_seg{k}_img1.png", overwrite=True)
                print(f"\n[image: {path}]", file=stdout)
            elif ev.kind == "speech":
                path = save_wav(ev.value, out_dir / f"{uid}_seg{k}_audio.wav", model.speech.sample_rate,
                                normalize=True)
                print(f"\n[speech: {path}]", file=stdout)
        print(file=stdout)
    for w in caught:
        print(f"warning: {w.message}", file=stdout)
