"""``aromni <command>``: discovers the command modules in :mod:`aromni.cli.commands`.

Each module there defines ``register(subparsers) -> None``, which adds one or more subcommands whose parser
carries ``func=handler``; ``handler(args) -> int | None`` does the work. A module whose optional dependencies
are missing still registers; it raises a clear :class:`~aromni.errors.AromniError` when run.

Exit codes: 0 on success; 2 for every user error, which prints exactly one line on stderr,
``error: <problem> (<hint>)``, and no traceback: a bad flag or value (argparse's own messages included), an
:class:`~aromni.errors.AromniError`, or an :class:`OSError` such as a full disk or a denied permission while
writing outputs. Ctrl-C exits 130. ``AROMNI_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from aromni import __version__
from aromni.cli import commands, common
from aromni.errors import AromniError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one ``error: ...`` line on stderr and exit 2 (argparse prints the
    usage and the message on two lines). Subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(str(message).split())
        if not message.endswith(")"):  # a message with its own hint needs no pointer to --help
            message += f" (see `{self.prog} --help`)"
        common.safe_print(f"error: {self.prog}: {message}", sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="aromni", description="AR-Omni: any-to-any autoregressive generation.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"aromni.cli.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        if e.code == 2:  # a bad flag or value: Parser.error has printed its one line
            return 2
        raise  # --help (argparse exits 0 after printing it)
    if args.version:
        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        code = args.func(args)
    except AromniError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        common.flush_notes(show=False)
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout went away (`aromni ... | head`): stop quietly, and keep Python from failing again at exit.
        common.flush_notes(show=False)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as e:
        if os.environ.get("AROMNI_DEBUG"):
            raise
        return _fail(_describe_os_error(e))
    common.flush_notes(show=True)
    return int(code or 0)


def _fail(message: str) -> int:
    if os.environ.get("AROMNI_DEBUG"):
        raise  # noqa: PLE0704 - re-raise the exception being handled
    common.flush_notes(show=False)
    common.safe_print(f"error: {' '.join(message.split())}", sys.stderr)
    return 2


def _describe_os_error(e: OSError) -> str:
    """One line for an OSError (``e.filename`` is where it happened)."""
    where = f"{e.filename}: " if e.filename else ""
    what = e.strerror or str(e) or type(e).__name__
    hints = {28: "free some space or write elsewhere", 13: "check the permissions or write elsewhere",
             30: "write to a writable location"}
    hint = hints.get(e.errno or 0, "check the path and the file system")
    return f"{where}{what} ({hint})"


if __name__ == "__main__":
    sys.exit(main())
