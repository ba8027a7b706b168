"""``aromni cosyvoice {fsq-train,fsq-encode}``: train CosyVoice2's supervised FSQ speech tokenizer at toy scale and
encode a world's clips with it.

::

    aromni cosyvoice fsq-train --world runs/toy2/world --out runs/cosyvoice/fsq_toy \\
        [--config configs/cosyvoice/toy_fsq.yaml] [key=value ...]
    aromni cosyvoice fsq-train --out runs/cosyvoice/fsq_toy --resume [steps=N ...]
    aromni cosyvoice fsq-encode --tokenizer runs/cosyvoice/fsq_toy/tokenizer --world runs/toy2/world \\
        --splits train,validation,test --out runs/cosyvoice/fsq_tokens.jsonl

Not auto-discovered (the leading underscore): the ``cosyvoice`` group module calls :func:`register` with its
subparsers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aromni.cli import common
from aromni.cli.commands.llamagen import prepare_out  # the trainers' one run-directory rule (--overwrite)
from aromni.cosyvoice.data import read_manifest
from aromni.cosyvoice.fsq_tokenizer import FSQSpeechTokenizer
from aromni.errors import InputError
from aromni.training.recipes.fsq_tokenizer import FSQTrainer, encode_clips
from aromni.training.recipes.fsq_tokenizer_config import load_fsq_train_config, resume_fsq_config
from aromni.utils.io import atomic_path

SPLITS = ("train", "validation", "test")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``fsq-train`` and ``fsq-encode`` to the ``cosyvoice`` group's ``subparsers``."""
    t = subparsers.add_parser("fsq-train", help="train the supervised FSQ speech tokenizer (CTC) on a world",
                              description="Train the FSQ speech tokenizer (toy default: d=128, 2+2 blocks, "
                                          "3**6 codes) with a CTC character loss; writes OUT/{checkpoints/,"
                                          "metrics.jsonl,tokenizer/,summary.json}. Settings: --config YAML and/or "
                                          "key=value (e.g. steps=3000 model.code_dims=8).")
    t.add_argument("--world", help="toy world (or folder holding speech.jsonl); required for a new run")
    common.add_train_run_args(t, settings_help="settings (FSQTrainConfig fields; model.<field> for the network)")
    t.set_defaults(func=_train)

    e = subparsers.add_parser("fsq-encode", help="encode a world's clips to FSQ tokens (one JSON line per clip)",
                              description="Writes one line per clip: path (relative to the manifest), split, "
                                          "transcript, voice, tokens.")
    e.add_argument("--tokenizer", required=True, type=Path, help="FSQ tokenizer directory (fsq-train's OUT/tokenizer)")
    e.add_argument("--world", required=True, type=Path, help="toy world (or folder holding speech.jsonl)")
    e.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits (default: all three)")
    e.add_argument("--out", required=True, type=Path, help="output JSONL file (written atomically)")
    e.add_argument("--batch-size", type=common.positive_int,
                   default=32, help="clips per forward pass")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_encode)


def _train(args: argparse.Namespace) -> int:
    common.check_train_run_args(args)
    if args.resume:
        cfg = resume_fsq_config(args.out, args.overrides)
        if args.world is not None and args.world != cfg.world:
            raise InputError(f"--world {args.world!r} differs from the run's {cfg.world!r}",
                             "drop --world to resume on the run's own world")
    else:
        if args.world is None:
            raise InputError("--world is required for a new run", "e.g. --world runs/toy2/world")
        if not Path(args.world).exists():
            raise InputError(f"{args.world}: no such world", "build one with `aromni toyworld build`")
        cfg = load_fsq_train_config(args.config, args.overrides, world=args.world)
    trainer = FSQTrainer(cfg, args.out, progress=not args.quiet)  # reads the manifest before touching --out
    prepare_out(args.out, resume=args.resume, overwrite=args.overwrite)
    common.safe_print(f"training on {len(trainer.recipe.train_clips)} clips, evaluating on "
                      f"{len(trainer.recipe.val_clips)}; {trainer.model.metadata()['parameters']:,} parameters, "
                      f"{trainer.model.codebook_size} codes")
    print(json.dumps(trainer.run()))
    return 0


def _encode(args: argparse.Namespace) -> int:
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    bad = sorted(set(splits) - set(SPLITS))
    if not splits or bad:
        raise InputError(f"--splits {args.splits!r}: unknown split(s) {bad}", f"choose from {', '.join(SPLITS)}")
    if args.out.exists() and not args.overwrite:
        raise InputError(f"{args.out} already exists", "pass --overwrite to replace it, or another --out")
    if not args.world.exists():
        raise InputError(f"{args.world}: no such world", "pass a toy world or a folder holding speech.jsonl")
    manifest = args.world / "speech.jsonl" if args.world.is_dir() else args.world
    tokenizer = FSQSpeechTokenizer.from_pretrained(args.tokenizer)
    clips = {split: read_manifest(manifest, split) for split in splits}  # every split checked before encoding
    with atomic_path(args.out) as tmp, tmp.open("w", encoding="utf-8") as f:
        for split in splits:
            tokens = encode_clips(tokenizer, clips[split], args.batch_size, progress=not args.quiet)
            for clip, row in zip(clips[split], tokens):
                f.write(json.dumps({"path": clip.path.relative_to(manifest.parent).as_posix(), "split": split,
                                    "transcript": clip.transcript, "voice": clip.voice, "tokens": row}) + "\n")
    common.safe_print(f"wrote {sum(len(c) for c in clips.values())} clips to {args.out}")
    return 0
