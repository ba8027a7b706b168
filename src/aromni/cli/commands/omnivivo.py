"""``aromni omnivivo train``: OmniVIVO's speech stage (LoRA + speech branch on a frozen t2i backbone)."""

from __future__ import annotations

import argparse
import json

from aromni.cli import common
from aromni.training.recipes.omnivivo import train_omnivivo
from aromni.training.recipes.omnivivo_config import load_train_config, resume_config


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("omnivivo", help="OmniVIVO: train the speech path on a frozen t2i backbone")
    sub = p.add_subparsers(dest="omnivivo_command", metavar="SUBCOMMAND", required=True)
    t = sub.add_parser(
        "train", help="train LoRA + the speech branch on (text, audio) pairs",
        description="Train OmniVIVO's speech stage; writes OUT/{checkpoints/,metrics.jsonl,speech_codes/,"
                    "averaged.safetensors,omnivivo/,summary.json}. Settings: --config YAML and/or key=value "
                    "(e.g. backbone=DIR conditioner=DIR speech_tokenizer=DIR train_manifest=train.jsonl "
                    "steps=2000 vivo.branch_layers=2 vivo.lora.r=8); see configs/omnivivo/toy_speech.yaml.")
    common.add_train_run_args(t, settings_help="training settings (paper defaults: lr=1e-4 batch_size=14 ...)")
    t.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    common.check_train_run_args(args)
    cfg = resume_config(args.out, args.overrides) if args.resume else load_train_config(args.config, args.overrides)
    summary = train_omnivivo(cfg, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    print(json.dumps(summary))
    return 0
