"""``aromni cosyvoice flow-train``: train CosyVoice2's flow-matching token-to-mel model on speech tokens and a
world's audio; ``aromni cosyvoice flow-eval``: held-out mel L1 of an exported model (see
:mod:`aromni.training.recipes.cosyvoice_flow` and docs/cosyvoice.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aromni.cli import common
from aromni.cosyvoice.flow import load_speaker_embedding
from aromni.errors import InputError
from aromni.training.recipes.cosyvoice_flow import evaluate_export, train_flow
from aromni.training.recipes.cosyvoice_flow_config import FlowTrainConfig, load_flow_train_config, resume_flow_config


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

    e = subparsers.add_parser(
        "flow-eval", help="held-out mel L1 of an exported flow model (sampled, mu alone, mean frame)",
        description="Sample mel for held-out clips of a token JSONL and print the mean absolute log-mel difference "
                    "to the true mel (and that of the encoder's mu and of the training set's mean frame) as JSON.")
    e.add_argument("--model", required=True, type=Path, help="flow/ directory written by flow-train")
    e.add_argument("--tokens", required=True, type=Path, help="speech-token JSONL, one line per clip")
    e.add_argument("--world", required=True, type=Path, help="folder the token file's audio paths are relative to")
    e.add_argument("--split", default="test", help="split to score (default test)")
    e.add_argument("--clips", type=common.positive_int, default=16, help="seeded sample of clips (default 16)")
    e.add_argument("--max-seconds", type=float, default=6.0, help="longest clip scored (default 6)")
    e.add_argument("--n-timesteps", type=common.positive_int, default=10, help="Euler steps (default 10)")
    e.add_argument("--cfg-rate", type=float, default=0.7, help="guidance rate r in (1+r) v_cond - r v_uncond")
    e.add_argument("--prompt-ratio", type=float, default=0.0,
                   help="use each clip's first share of tokens (and true mel) as the prompt; score the rest")
    e.add_argument("--streaming", action="store_true", help="chunk-masked attention (the streaming mode)")
    e.add_argument("--speaker", type=Path, help="[192] speaker embedding (.npy/.safetensors) instead of the export's")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> int:
    common.check_train_run_args(args)
    cfg = resume_flow_config(args.out, args.overrides) if args.resume else load_flow_train_config(args.config,
                                                                                                  args.overrides)
    summary = train_flow(cfg, args.tokens, args.world, args.out, resume=args.resume, overwrite=args.overwrite,
                         progress=not args.quiet)
    print(json.dumps(summary))
    return 0


def _eval(args: argparse.Namespace) -> int:
    if not 0 <= args.prompt_ratio < 1 or args.max_seconds <= 0:
        raise InputError("--prompt-ratio must lie in [0, 1) and --max-seconds be positive")
    cfg = FlowTrainConfig(eval_split=args.split, eval_clips=args.clips, max_seconds=args.max_seconds,
                          n_timesteps=args.n_timesteps, cfg_rate=args.cfg_rate)
    speaker = None if args.speaker is None else load_speaker_embedding(args.speaker)
    figures = evaluate_export(args.model, args.tokens, args.world, cfg, speaker=speaker,
                              prompt_ratio=args.prompt_ratio, streaming=args.streaming, progress=not args.quiet)
    print(json.dumps({"model": str(args.model), "split": args.split, "prompt_ratio": args.prompt_ratio,
                      "streaming": args.streaming, "cfg_rate": args.cfg_rate, **figures}))
    return 0
