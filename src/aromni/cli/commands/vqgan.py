"""``aromni vqgan {train,eval,convert}``: train small VQGAN image tokenizers, measure them, import Meta's files."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from aromni.cli import common
from aromni.errors import InputError
from aromni.tokenizers.base import load_tokenizer
from aromni.tokenizers.image.dataset import find_images, load_images, to_model_range
from aromni.tokenizers.image.image_io import save_image
from aromni.tokenizers.image.metrics import color_error, psnr, to_uint8
from aromni.tokenizers.image.vqgan import VQGAN
from aromni.training.checkpoint import CHECKPOINTS
from aromni.training.loop import LEGACY_DIR, find_checkpoint
from aromni.training.recipes.vqgan import VQGANTrainer
from aromni.training.recipes.vqgan_config import VQGANTrainConfig, load_train_config, parse_overrides
from aromni.utils.io import read_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("vqgan", help="VQGAN image tokenizer: train, evaluate, convert official files")
    sub = p.add_subparsers(dest="vqgan_command", metavar="SUBCOMMAND", required=True)

    t = sub.add_parser("train", help="train a small VQGAN on a folder of images",
                       description="Train a VQGAN; writes OUT/{checkpoints/,metrics.jsonl,tokenizer/}. "
                                   "Settings: --config YAML and/or key=value (e.g. steps=3000 model.n_embed=256).")
    t.add_argument("--images", required=True, help="directory (searched recursively) or glob of images")
    common.add_train_run_args(t, settings_help="settings (see docs/image_tokenizer.md)")
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="reconstruct images and report PSNR / colour error")
    e.add_argument("--model", required=True, type=Path, help="tokenizer directory")
    e.add_argument("--images", required=True, help="directory or glob of images")
    e.add_argument("--limit", type=common.nonneg_int, default=0, help="use at most this many images (0: all)")
    e.add_argument("--save", type=Path, help="write input|reconstruction pairs as PNGs into this directory")
    e.add_argument("--overwrite", action="store_true", help="replace existing PNGs in --save")
    e.set_defaults(func=_eval)

    c = sub.add_parser("convert", help="Meta's vqgan.yaml + vqgan.ckpt (or an HF Chameleon dir) -> tokenizer dir")
    c.add_argument("--yaml", type=Path, help="Meta's tokenizer/vqgan.yaml")
    c.add_argument("--ckpt", type=Path, help="Meta's tokenizer/vqgan.ckpt")
    c.add_argument("--hf", type=Path, help="HF Chameleon model directory (encoder + codebook only)")
    c.add_argument("--out", required=True, type=Path)
    c.add_argument("--overwrite", action="store_true")
    c.set_defaults(func=_convert)


def _train(args: argparse.Namespace) -> int:
    common.check_train_run_args(args)
    out: Path = args.out
    if args.resume:
        ckpt = find_checkpoint(out)
        if ckpt is None or not (ckpt / "trainer.json").is_file():
            raise InputError(f"{out}: no checkpoint to resume from", "drop --resume to start a new run")
        images = _load(args.images, _saved_resolution(ckpt), args.quiet)
        trainer = VQGANTrainer.resume(ckpt, images, out, changes=parse_overrides(args.overrides),
                                 disable_progress=args.quiet)
    else:
        cfg = load_train_config(args.config, args.overrides)
        if out.exists() and any(out.iterdir()) and not args.overwrite:
            raise InputError(f"{out} already exists and is not empty",
                             "pass --resume to continue that run, --overwrite to start again, or another --out")
        images = _load(args.images, cfg.model_config().resolution, args.quiet, cfg.max_images)
        if args.overwrite:
            for name in (CHECKPOINTS, LEGACY_DIR):
                shutil.rmtree(out / name, ignore_errors=True)
            (out / "metrics.jsonl").unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        trainer = VQGANTrainer(cfg, images, out, disable_progress=args.quiet)
    print(f"training on {len(trainer.train_set)} images, holding out {len(trainer.val_set)}; "
          f"model {trainer.model.metadata()['parameters']:,} parameters, grid {trainer.model.grid}")
    summary = trainer.run()
    print(json.dumps(summary))
    return 0


def _load(spec: str, size: int, quiet: bool, limit: int = 0) -> torch.Tensor:
    paths = find_images(spec)
    return load_images(paths[:limit] if limit > 0 else paths, size, disable_progress=quiet, skip_bad=True)


def _saved_resolution(ckpt: Path) -> int:
    saved = {k: v for k, v in read_json(ckpt / "trainer.json")["config"].items() if k != "n_images"}
    return VQGANTrainConfig.from_dict(saved).model_config().resolution


def _eval(args: argparse.Namespace) -> int:
    model = load_tokenizer(args.model)
    paths = find_images(args.images)
    paths = paths[: args.limit] if args.limit > 0 else paths
    if args.save is not None:  # refuse to replace files before any work
        common.make_dir(args.save)
        for path in paths:
            common.check_output_path(args.save / f"{path.stem}_recon.png", args.overwrite, (".png",))
    data = load_images(paths, model.image_size)
    recs, codes = [], []
    for i in range(0, len(data), 32):
        c = model.encode(to_model_range(data[i:i + 32]))
        codes.append(c.reshape(-1))
        recs.append(to_uint8(model.decode(c)))
    rec = torch.cat(recs)
    used = torch.cat(codes).unique().numel()
    print(json.dumps({"images": len(data), "psnr": round(psnr(rec, data), 3),
                      "color_error": round(color_error(rec, data), 3), "codes_used": used,
                      "codebook_size": model.codebook_size}))
    if args.save is not None:
        from PIL import Image

        for path, a, b in zip(paths, data, rec):
            pair = Image.fromarray(torch.cat([a, b], dim=2).permute(1, 2, 0).numpy(), "RGB")  # input | recon
            save_image(pair, args.save / f"{path.stem}_recon.png", overwrite=True)
    return 0


def _convert(args: argparse.Namespace) -> int:
    if args.hf is not None:
        model = VQGAN.from_hf_chameleon(args.hf)
    elif args.yaml is not None and args.ckpt is not None:
        model = VQGAN.from_chameleon(args.yaml, args.ckpt)
    else:
        raise InputError("nothing to convert", "pass --yaml and --ckpt (Meta) or --hf (HF Chameleon directory)")
    model.save_pretrained(args.out, overwrite=args.overwrite)
    print(json.dumps({**model.metadata(), **model.load_report, "out": str(args.out)}))
    return 0
