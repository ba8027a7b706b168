"""``aromni llamagen {vq-train,t2i-train}``: train OmniVIVO's image side at toy scale, LlamaGen's way.

::

    aromni llamagen vq-train --images 'world/images/train/*.png' --out runs/vq [--config C.yaml] [key=value ...]
    aromni llamagen t2i-train --config configs/omnivivo/toy_t2i.yaml --out runs/t2i [key=value ...]
    aromni llamagen {vq,t2i}-train --out DIR --resume [steps=N ...]

Both write resumable runs (``OUT/checkpoints/step-N``); a run directory that is not empty is refused unless
``--resume`` (continue it) or ``--overwrite`` (start again: the run's own files are deleted, nothing else).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aromni.cli import common
from aromni.errors import ConfigError, InputError
from aromni.tokenizers.image.dataset import find_images, load_images
from aromni.training.checkpoint import CHECKPOINTS
from aromni.training.recipes.llamagen_t2i import BACKBONE_EXPORT, CACHE, TEXT_EXPORT, LlamaGenT2ITrainer
from aromni.training.recipes.llamagen_t2i_config import load_t2i_train_config, resume_t2i_config
from aromni.training.recipes.llamagen_vq import EXPORT, LlamaGenVQTrainer
from aromni.training.recipes.llamagen_vq_config import load_vq_train_config, resume_vq_config
from aromni.training.run_dir import prepare_run_dir

#: What a run writes into its directory (``--overwrite`` deletes these and nothing else).
RUN_DIRS = (CHECKPOINTS, CACHE, EXPORT, BACKBONE_EXPORT, TEXT_EXPORT)
RUN_FILES = ("metrics.jsonl", "summary.json")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("llamagen", help="OmniVIVO's image side: train LlamaGen's VQ and T2I backbone")
    sub = p.add_subparsers(dest="llamagen_command", metavar="SUBCOMMAND", required=True)

    v = sub.add_parser("vq-train", help="train a LlamaGen VQ image tokenizer on a folder or glob of images",
                       description="Train LlamaGen's VQ (toy preset by default); writes OUT/{checkpoints/,"
                                   "metrics.jsonl,tokenizer/}. Settings: --config YAML and/or key=value "
                                   "(e.g. steps=4000 color_weight=1 model.codebook_size=512).")
    v.add_argument("--images", help="directory (searched recursively) or glob of images; required for a new run")
    common.add_train_run_args(v, settings_help="settings (LlamaGenVQTrainConfig fields)")
    v.set_defaults(func=_vq_train)

    t = sub.add_parser("t2i-train", help="train a LlamaGen T2I backbone and a toy text conditioner",
                       description="Train LlamaGen's text-to-image transformer (toy preset by default) on a toy "
                                   "world or a JSONL manifest with a trained VQ; writes OUT/{checkpoints/,cache/,"
                                   "metrics.jsonl,backbone/,text/}. Settings: --config YAML and/or key=value "
                                   "(e.g. world=runs/world vq=runs/vq/tokenizer steps=3000).")
    common.add_train_run_args(t, settings_help="settings (LlamaGenT2ITrainConfig fields)")
    t.set_defaults(func=_t2i_train)


def prepare_out(out: Path, *, resume: bool, overwrite: bool) -> None:
    """The run directory of a LlamaGen (or FSQ tokenizer) run; see :func:`prepare_run_dir`."""
    prepare_run_dir(out, resume=resume, overwrite=overwrite, run_files=RUN_FILES, run_dirs=RUN_DIRS)


def _vq_train(args: argparse.Namespace) -> int:
    common.check_train_run_args(args)
    if args.resume:
        cfg = resume_vq_config(args.out, args.overrides)
        if args.images is not None and args.images != cfg.images:
            raise ConfigError(f"--images {args.images!r} differs from the run's {cfg.images!r}",
                              "drop --images to resume on the run's own images")
    else:
        if args.images is None:
            raise InputError("--images is required for a new run", "e.g. --images 'world/images/train/*.png'")
        cfg = load_vq_train_config(args.config, args.overrides, images=args.images)
    paths = find_images(cfg.images)
    paths = paths[: cfg.max_images] if cfg.max_images > 0 else paths
    images = load_images(paths, cfg.model_config().image_size, disable_progress=args.quiet, skip_bad=True)
    prepare_out(args.out, resume=args.resume, overwrite=args.overwrite)
    trainer = LlamaGenVQTrainer(cfg, images, args.out, progress=not args.quiet)
    common.safe_print(f"training on {len(trainer.train_set)} images, holding out {len(trainer.val_set)}; "
                      f"{trainer.model.metadata()['parameters']:,} parameters, grid {trainer.model.grid}")
    print(json.dumps(trainer.run()))
    return 0


def _t2i_train(args: argparse.Namespace) -> int:
    common.check_train_run_args(args)
    if args.resume:
        cfg = resume_t2i_config(args.out, args.overrides)
    else:
        cfg = load_t2i_train_config(args.config, args.overrides)
    prepare_out(args.out, resume=args.resume, overwrite=args.overwrite)
    trainer = LlamaGenT2ITrainer(cfg, args.out, progress=not args.quiet)
    common.safe_print(f"training on {len(trainer.recipe.train_set)} pairs, evaluating on "
                      f"{len(trainer.recipe.val_set)}; backbone {sum(p.numel() for p in trainer.model.parameters()):,}"
                      f" parameters, text conditioner {sum(p.numel() for p in trainer.text.parameters()):,}")
    print(json.dumps(trainer.run()))
    return 0
