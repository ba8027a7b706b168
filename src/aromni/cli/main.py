"""``aromni <command>``: discovers the command modules in :mod:`aromni.cli.commands`.

Each module there defines ``register(subparsers) -> None``, which adds one or more subcommands whose parser
carries ``func=handler``; ``handler(args) -> int | None`` does the work. A module whose optional dependencies
are missing still registers; it raises a clear :class:`~aromni.errors.AromniError` when run.

User errors (:class:`~aromni.errors.AromniError`) print one line, ``error: <problem> (<hint>)``, and exit 2;
no traceback. ``AROMNI_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from aromni.errors import AromniError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aromni", description="AR-Omni: any-to-any autoregressive generation.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from aromni.cli import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"aromni.cli.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from aromni import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        code = args.func(args)
    except AromniError as e:
        if os.environ.get("AROMNI_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
