"""``aromni codec {train,reconstruct}``: train our exactly-streaming speech codec, and listen to it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from aromni.cli import common
from aromni.errors import InputError
from aromni.tokenizers.base import SpeechTokenizer, load_tokenizer
from aromni.tokenizers.speech.audio_io import load_audio, save_wav
from aromni.tokenizers.speech.mel import LogMel, MelConfig
from aromni.training.recipes.codec import train_codec
from aromni.training.recipes.codec_config import load_train_config, resume_config


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("codec", help="streaming speech codec: train, reconstruct audio")
    sub = p.add_subparsers(dest="codec_command", metavar="SUBCOMMAND", required=True)

    t = sub.add_parser("train", help="train a streaming codec on a folder of audio files",
                       description="Train the aromni streaming codec; writes OUT/{metrics.jsonl,checkpoints/,"
                                   "tokenizer/,summary.json}. Settings: --config YAML and/or key=value "
                                   "(e.g. steps=2000 preset=tiny codec.dec_dim=384). See docs/speech_codec.md.")
    t.add_argument("--audio", required=True, help="directory (searched recursively) or glob of audio files")
    common.add_train_run_args(t, settings_help="training settings")
    t.set_defaults(func=_train)

    r = sub.add_parser("reconstruct", help="encode + decode audio files (offline or streamed) and report mel L1")
    r.add_argument("--model", required=True, type=Path, help="tokenizer directory (aromni_codec or any speech type)")
    r.add_argument("inputs", nargs="+", type=Path, help="audio files")
    r.add_argument("--out", type=Path, help="write <name>.rec.wav files into this directory")
    r.add_argument("--overwrite", action="store_true", help="replace existing <name>.rec.wav files in --out")
    r.add_argument("--chunk", type=common.nonneg_int, default=0,
                   help="decode with the stream decoder, this many frames a push (0: offline)")
    r.set_defaults(func=_reconstruct)


def _train(args: argparse.Namespace) -> int:
    common.check_train_run_args(args)
    cfg = resume_config(args.out, args.overrides) if args.resume else load_train_config(args.config, args.overrides)
    summary = train_codec(cfg, args.audio, args.out, resume=args.resume, overwrite=args.overwrite,
                          progress=not args.quiet)
    print(json.dumps(summary))
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    tok = load_tokenizer(args.model)
    if not isinstance(tok, SpeechTokenizer):
        raise InputError(f"{args.model} is a {tok.modality} tokenizer, not a speech codec")
    mel = LogMel(MelConfig(sample_rate=tok.sample_rate))
    if args.out is not None:  # refuse to replace files before any work
        common.make_dir(args.out)
        for path in args.inputs:
            common.check_output_path(args.out / f"{path.stem}.rec.wav", args.overwrite, (".wav",))
    for path in args.inputs:
        wav = load_audio(path, tok.sample_rate)
        with torch.no_grad():
            codes = tok.encode(wav[None])
            if args.chunk > 0:
                dec = tok.stream_decoder(1)
                rec = torch.cat([*dec.stream(iter(codes.split(args.chunk, dim=1)))], dim=-1)
            else:
                rec = tok.decode(codes)
        rec = rec[0, : wav.numel()]
        l1 = float((mel(rec[None]) - mel(wav[None])).abs().mean())
        line = {"file": str(path), "frames": codes.shape[1], "mel_l1": round(l1, 4)}
        if args.out is not None:
            dest = args.out / f"{path.stem}.rec.wav"
            save_wav(dest, rec, tok.sample_rate)
            line["wrote"] = str(dest)
        print(json.dumps(line))
    return 0
