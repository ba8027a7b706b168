"""``aromni data build`` (raw data -> token shards) and ``aromni data info`` (what shards hold)."""

from __future__ import annotations

import argparse
from pathlib import Path

from aromni.training.data.build import BuildConfig, build, format_report
from aromni.training.data.shards import read_manifest


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="build and inspect training data shards")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])

    b = sub.add_parser(
        "build",
        help="tokenize raw data (pairs, text, dialogs, official JSONL) into parquet shards",
        description="Build token shards from the sources listed in a YAML config (docs/data.md). "
        "Re-running the same command after an interruption resumes the build.",
    )
    b.add_argument("--config", required=True, help="build config (YAML)")
    b.add_argument("--out", help="output directory (default: the config's 'out')")
    b.add_argument("--workers", type=int, help="worker processes (default: the config's 'workers', else 1)")
    b.add_argument(
        "--overwrite", action="store_true", help="replace an existing build in the output directory"
    )
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)

    i = sub.add_parser("info", help="print the manifest summary and skip report of a shard directory")
    i.add_argument("dir", help="shard directory (holding manifest.json)")
    i.set_defaults(func=_info)


def _build(args: argparse.Namespace) -> int:
    cfg = BuildConfig.load(args.config)
    manifest = build(
        cfg, out=args.out, workers=args.workers, overwrite=args.overwrite, progress=not args.quiet
    )
    out = args.out if args.out is not None else cfg.resolve(cfg.out or "")
    print(format_report(manifest, out))
    return 0


def _info(args: argparse.Namespace) -> int:
    print(format_report(read_manifest(args.dir), Path(args.dir)))
    return 0
