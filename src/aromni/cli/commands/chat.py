"""``aromni chat``: run dialogs from a file (official ``inference_chat.py`` schema and output layout), or talk
interactively (no ``--input``).

Interactive commands: a plain line is a text turn; ``/image PATH`` attaches an image to the next turn;
``/audio PATH`` sends a spoken turn (with any attached images); ``/reset`` clears the history; ``/quit`` exits
(so do end of input and Ctrl-C at the prompt). Ctrl-C while a reply is generated cancels that turn: it is not
added to the history. Images and speech in replies are written to ``--output-dir``.

A dialog file run refuses a non-empty ``--output-dir`` unless ``--overwrite`` (which replaces the outputs of the
earlier run). Failed turns are recorded in ``batch_log.json``; the run then ends with one ``error:`` line and
exit 2.
"""

from __future__ import annotations

import argparse
import sys
import uuid
import warnings
from pathlib import Path
from collections.abc import Callable
from typing import TextIO

from aromni.cli import common
from aromni.errors import AromniError
from aromni.inference.chat import ChatSession
from aromni.inference.dialogs import DialogRunner, check_output_dir, normalize_dialogs, read_dialog_file
from aromni.inference.media import save_png, save_wav
from aromni.inference.omni import OmniModel
from aromni.tokenizers.image.image_io import load_image
from aromni.vocab.tasks import CHAT

#: Prints one line (or part of one, with ``end=""``) to the session's output.
Say = Callable[..., None]

PROMPT = "you> "


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(CHAT.name, help="multi-turn chat: a dialog file (--input) or an interactive session")
    p.add_argument("--input", default=None, help="dialogs as JSON/JSONL in the official inference_chat.py schema")
    p.add_argument("--output-dir", default=None, help="where outputs go (required with --input; REPL: chat_out)")
    p.add_argument("--overwrite", action="store_true",
                   help="with --input: run into a non-empty --output-dir, replacing the outputs of an earlier run")
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
    reconfigure = getattr(sys.stdin, "reconfigure", None)
    if reconfigure is not None:  # undecodable bytes typed at the prompt become U+FFFD, not a crash
        try:
            reconfigure(errors="replace")
        except (ValueError, OSError):
            pass
    return run_repl(args, sys.stdin, sys.stdout)


def run_file(args: argparse.Namespace) -> int:
    if not args.output_dir:
        raise AromniError("--input needs --output-dir", "e.g. --output-dir chat_out")
    check_output_dir(args.output_dir, args.overwrite)  # before the model loads
    dialogs = normalize_dialogs(read_dialog_file(args.input), args.input)
    model = common.load_model(args)
    opts = common.decode_options(args, CHAT, model)
    base = args.base_dir or str(Path(args.input).resolve().parent)
    runner = DialogRunner(model, args.output_dir, base_dir=base, options=opts, save_tokens=args.save_tokens,
                          overwrite=args.overwrite)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        log = runner.run(dialogs)
    failed = [m for m in log if m.get("error")]
    log_path = str(Path(args.output_dir) / "batch_log.json")
    payload = {"output_dir": args.output_dir, "turns": len(log), "failed": len(failed), "batch_log": log_path}
    human = f"{len(log)} turn(s), {len(failed)} failed; log: {log_path}"
    for m in failed:
        turn = f" turn {m['turn_index']}" if m.get("turn_index") is not None else ""
        human += f"\n  {m['dialog_id']}{turn}: {m['error']}"
    common.emit(args, payload, human)
    if failed:
        raise AromniError(f"{len(failed)} of {len(log)} turns failed", f"see {log_path}")
    return 0


def run_repl(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, *, model: OmniModel | None = None,
             interactive: bool | None = None) -> int:
    """The interactive loop. ``interactive`` (default: ``stdin`` is a terminal) prints the ``you>`` prompt."""
    out_dir = Path(args.output_dir or "chat_out")
    check_output_dir(out_dir, overwrite=True)  # a file in the way is refused before the model loads
    if interactive is None:
        interactive = _isatty(stdin)
    if model is None:
        model = common.load_model(args)
    common.flush_notes()  # the session runs until the user quits: show the model note now
    kw: dict[str, str] = {} if args.append_text is None else {"append_text": args.append_text}
    session = model.chat(options=common.decode_options(args, CHAT, model), **kw)
    images: list[object] = []

    def say(text: str, **kw: str | bool) -> None:
        common.safe_print(text, stdout, flush=True, **kw)

    say("aromni chat: type a message; /image PATH, /audio PATH, /reset, /quit (Ctrl-C cancels a reply)")
    while True:
        line = _read_line(stdin, stdout, interactive)
        if line is None:
            break
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            session.reset()
            images.clear()
            say("(history cleared)")
            continue
        if line == "/image" or line.startswith("/image "):
            _attach(line[len("/image"):].strip(), images, say)
            continue
        turn: dict[str, object] = {"images": list(images)}
        if line == "/audio" or line.startswith("/audio "):
            path = line[len("/audio"):].strip()
            if not path:
                say("error: usage: /audio PATH")
                continue
            turn["audio"] = path
        elif line.startswith("/"):
            say(f"error: unknown command {line.split()[0]} (use /image, /audio, /reset, /quit)")
            continue
        else:
            turn["text"] = line
        try:
            _reply(session, model, turn, out_dir, say)
            images.clear()
        except KeyboardInterrupt:
            say("\n(reply cancelled; this turn is not in the history)")
        except (AromniError, OSError, ValueError) as e:
            say(f"error: {e}")
    return 0


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _read_line(stdin: TextIO, stdout: TextIO, interactive: bool) -> str | None:
    """The next line, or ``None`` at end of input or Ctrl-C at the prompt (both quit)."""
    try:
        if interactive:
            common.safe_print(PROMPT, stdout, end="", flush=True)
        raw = stdin.readline()
    except KeyboardInterrupt:
        if interactive:
            common.safe_print("", stdout)
        return None
    if raw == "":
        if interactive:
            common.safe_print("", stdout)
        return None
    return raw


def _attach(path: str, images: list[object], say: Say) -> None:
    """Load the image now, so a missing or unreadable file is reported at once, not at the next turn."""
    if not path:
        say("error: usage: /image PATH")
        return
    try:
        images.append(load_image(path))
    except AromniError as e:
        say(f"error: {e}")
        return
    except (OSError, ValueError) as e:
        say(f"error: {path}: cannot read the image ({e})")
        return
    say(f"(image attached: {path})")


def _reply(session: ChatSession, model: OmniModel, turn: dict[str, object], out_dir: Path, say: Say) -> None:
    """Stream one reply. ``ChatSession.stream`` adds the turn to the history only after the reply is complete,
    so an exception (or Ctrl-C) here leaves the history as it was."""
    uid = uuid.uuid4().hex[:8]
    started = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        events = session.stream(**turn)
        try:
            for k, ev in enumerate(events, 1):
                if not started:
                    say("assistant: ", end="")
                    started = True
                if ev.kind == "text":
                    say(ev.value, end="")
                elif ev.kind == "image":
                    path = save_png(ev.value, out_dir / f"{uid}_seg{k}_img1.png", overwrite=True)
                    say(f"\n[image: {path}]")
                elif ev.kind == "speech":
                    path = save_wav(ev.value, out_dir / f"{uid}_seg{k}_audio.wav", model.speech.sample_rate,
                                    normalize=True)
                    say(f"\n[speech: {path}]")
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        if started:
            say("")
    for w in caught:
        say(f"warning: {w.message}")
