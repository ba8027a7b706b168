"""``aromni cosyvoice hift-train`` and ``aromni cosyvoice vocode``: train CosyVoice2's HiFT vocoder on a speech
manifest, and resynthesise a wav through it (wav -> Matcha mel -> HiFT).

The ``cosyvoice`` group (:mod:`aromni.cli.commands.cosyvoice`) imports every ``_cv_*.py`` module and calls its
:func:`register` with the group's subparsers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from aromni.cli import common
from aromni.cosyvoice.hift.generator import HiFTGenerator
from aromni.cosyvoice.mel import matcha_mel
from aromni.tokenizers.speech.audio_io import load_audio, save_wav
from aromni.training.recipes.cosyvoice_hift import train_hift
from aromni.training.recipes.cosyvoice_hift_config import load_hift_train_config, resume_hift_config

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``hift-train`` and ``vocode`` to the ``cosyvoice`` group's subparsers ``sub``."""
    t = sub.add_parser("hift-train", help="train the HiFT vocoder (24 kHz) on a speech manifest",
                       description="Train CosyVoice2's HiFT vocoder on ground-truth Matcha mels of a toy world's "
                                   "speech; writes OUT/{metrics.jsonl,checkpoints/,hift/,summary.json,"
                                   "spectrogram.png}. Settings: --config YAML and/or key=value (steps=1000 "
                                   "hift.base_channels=128). See docs/cosyvoice.md.")
    t.add_argument("--world", required=True, type=Path, help="toy world directory (or a speech.jsonl)")
    common.add_train_run_args(t, settings_help="training settings")
    t.set_defaults(func=_train)

    v = sub.add_parser("vocode", help="resynthesise a wav through a HiFT vocoder (wav -> mel -> HiFT)")
    v.add_argument("--hift", required=True, type=Path, help="exported vocoder directory (OUT/hift)")
    v.add_argument("--input", required=True, type=Path, help="audio file (any rate; resampled to 24 kHz)")
    v.add_argument("--out", required=True, type=Path, help="output .wav")
    v.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    v.add_argument("--seed", type=common.seed_int, default=0, help="seed of the source noise")
    v.set_defaults(func=_vocode)


def _train(args: argparse.Namespace) -> int:
    common.check_train_run_args(args)
    cfg = (resume_hift_config(args.out, args.overrides) if args.resume
           else load_hift_train_config(args.config, args.overrides))
    summary = train_hift(cfg, args.world, args.out, resume=args.resume, overwrite=args.overwrite,
                         progress=not args.quiet)
    print(json.dumps(summary))
    return 0


def _vocode(args: argparse.Namespace) -> int:
    common.check_output_path(args.out, args.overwrite, (".wav",))
    model = HiFTGenerator.from_pretrained(args.hift)
    wav = load_audio(args.input, model.sample_rate)
    wav = wav[: wav.numel() // model.hop_length * model.hop_length]
    mel = matcha_mel(wav[None])  # raises a one-line InputError for audio shorter than one frame
    out, _ = model.inference(mel, generator=torch.Generator().manual_seed(args.seed))
    save_wav(args.out, out[0], model.sample_rate)
    l1 = float((matcha_mel(out) - mel).abs().mean())
    print(json.dumps({"input": str(args.input), "frames": mel.shape[-1], "mel_l1": round(l1, 4),
                      "wrote": str(args.out)}))
    return 0

