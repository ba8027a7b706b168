"""``aromni cosyvoice ...``: CosyVoice2's speech stack (issue 15): the FSQ speech tokenizer, the flow-matching
token-to-mel model, the HiFT vocoder and the token-to-waveform chain built from them.

The subcommands live in the private modules ``aromni/cli/commands/_cv_*.py`` (one per component); each defines
``register(subparsers)`` and is imported here in name order, so a component adds its commands without touching
this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

from aromni.cli import commands


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("cosyvoice", help="CosyVoice2's speech stack: FSQ tokens, flow matching, HiFT")
    sub = p.add_subparsers(dest="cosyvoice_command", metavar="SUBCOMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_cv_"):
            importlib.import_module(f"aromni.cli.commands.{info.name}").register(sub)
