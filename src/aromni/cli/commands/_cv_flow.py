"""``aromni cosyvoice flow-train``: train CosyVoice2's flow-matching token-to-mel model on speech tokens and a
world's audio (see :mod:`aromni.training.recipes.cosyvoice_flow` and docs/cosyvoice_flow.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aromni.cli import common
from aromni.training.recipes.cosyvoice_flow import train_flow
from aromni.training.recipes.cosyvoice_flow_config import load_flow_train_config, resume_flow_config


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = subparsers.add_parser(
        "flow-train", help="train the flow-matching token-to-mel model (CosyVoice2's CausalMaskedDiffWithXvec)",
        description="Train Token2Mel on a speech-token JSONL (path, split, tokens) and the world's audio; writes "
                    "OUT/{metrics.jsonl,checkpoints/,flow/,summary.json}. Settings: --config YAML and/or key=value "
                    "(e.g. steps=2000 preset=toy tokenizer=DIR model.estimator.channels=96).")
    t.add_argument("--tokens", required=True, type=Path, help="speech-token JSONL, one line per clip")
    t.add_argument("--world", required=True, type=Path, help="folder the token file's audio paths are relative to")
    common.add_train_run_args(t, settings_help="training settings")
    t.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    common.check_train_run_args(args)
    cfg = resume_flow_config(args.out, args.overrides) if args.resume else load_flow_train_config(args.config,
                                                                                                  args.overrides)
    summary = train_flow(cfg, args.tokens, args.world, args.out, resume=args.resume, overwrite=args.overwrite,
                         progress=not args.quiet)
    print(json.dumps(summary))
    return 0
