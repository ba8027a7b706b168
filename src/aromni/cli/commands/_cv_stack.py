"""``aromni cosyvoice pack``: put a trained flow model and vocoder behind an FSQ tokenizer, giving one speech
tokenizer directory that encodes and decodes (``tokenizer/ + token2wav/{flow,hift}``, loadable by
``load_tokenizer`` and usable by OmniVIVO); ``aromni cosyvoice resynth``: a wav through the whole stack (wav ->
FSQ tokens -> flow-matching mel -> HiFT), offline or streaming.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from aromni.cli import common
from aromni.cosyvoice.flow import Token2Mel, load_speaker_embedding
from aromni.cosyvoice.fsq_tokenizer import TOKEN2WAV_DIR, FSQSpeechTokenizer
from aromni.cosyvoice.hift import HiFTGenerator
from aromni.cosyvoice.token2wav import Token2Wav, Token2WavConfig
from aromni.errors import InputError
from aromni.tokenizers.speech.audio_io import load_audio, save_wav
from aromni.utils.io import atomic_dir

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pack`` and ``resynth`` to the ``cosyvoice`` group's subparsers ``sub``."""
    p = sub.add_parser("pack", help="an FSQ tokenizer + flow + HiFT as one speech tokenizer that also decodes",
                       description="Copy --tokenizer to --out and save the flow model and vocoder under "
                                   f"--out/{TOKEN2WAV_DIR}/; the result decodes its own codes (load_tokenizer).")
    p.add_argument("--tokenizer", required=True, type=Path, help="FSQ tokenizer directory (fsq-train's tokenizer/)")
    p.add_argument("--flow", required=True, type=Path, help="flow model directory (flow-train's flow/)")
    p.add_argument("--hift", required=True, type=Path, help="vocoder directory (hift-train's hift/)")
    p.add_argument("--out", required=True, type=Path, help="new directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--steps", type=common.positive_int, default=10, help="Euler steps of the flow (default 10)")
    p.add_argument("--cfg-rate", type=float, default=0.7, help="classifier-free guidance rate (default 0.7)")
    p.add_argument("--speaker", type=Path, default=None,
                   help="a 192-d speaker embedding (.npy or .safetensors, e.g. a CAM++ x-vector) used for every "
                        "utterance (default: the flow's own learned vector)")
    p.set_defaults(func=_pack)

    r = sub.add_parser("resynth", help="a wav through the stack: FSQ tokens -> flow matching -> HiFT (24 kHz)")
    r.add_argument("--stack", required=True, type=Path, help="a packed directory (`aromni cosyvoice pack`)")
    r.add_argument("--input", required=True, type=Path, help="audio file (any rate)")
    r.add_argument("--out", required=True, type=Path, help="output .wav (24 kHz)")
    r.add_argument("--stream", action="store_true", help="decode chunk by chunk as CosyVoice2 streams")
    r.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    r.set_defaults(func=_resynth)


def _pack(args: argparse.Namespace) -> int:
    tok = FSQSpeechTokenizer.from_pretrained(args.tokenizer)
    flow = Token2Mel.from_pretrained(args.flow)
    hift = HiFTGenerator.from_pretrained(args.hift)
    if flow.config.vocab_size != tok.codebook_size:
        raise InputError(f"the flow model reads {flow.config.vocab_size} token ids, the tokenizer makes "
                         f"{tok.codebook_size}", "train the flow on this tokenizer's codes (flow-train --tokens)")
    if not args.cfg_rate >= 0:
        raise InputError(f"--cfg-rate must be >= 0, got {args.cfg_rate}")
    speaker = load_speaker_embedding(args.speaker) if args.speaker else None
    chain = Token2Wav(flow, hift, speaker=speaker,
                      config=Token2WavConfig(n_timesteps=args.steps, cfg_rate=args.cfg_rate))
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        shutil.copytree(args.tokenizer, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(TOKEN2WAV_DIR))
        chain.save_pretrained(tmp / TOKEN2WAV_DIR)
    print(json.dumps({"out": str(args.out), "codebook_size": tok.codebook_size,
                      "flow_parameters": sum(p.numel() for p in flow.parameters()),
                      "hift_parameters": sum(p.numel() for p in hift.parameters())}))
    return 0


def _resynth(args: argparse.Namespace) -> int:
    common.check_output_path(args.out, args.overwrite, (".wav",))
    tok = FSQSpeechTokenizer.from_pretrained(args.stack)
    if tok.token2wav is None:
        raise InputError(f"{args.stack} has no {TOKEN2WAV_DIR}/ folder", "make one with `aromni cosyvoice pack`")
    wav = load_audio(args.input, tok.sample_rate)
    codes = tok.encode(wav[None])
    t0 = time.perf_counter()
    first = None
    if args.stream:
        chunks = []
        with tok.streaming(1) as dec:
            for i in range(codes.shape[1]):
                chunk = dec.push(codes[:, i:i + 1])
                if chunk.shape[1] and first is None:
                    first = time.perf_counter() - t0
                chunks.append(chunk)
            chunks.append(dec.flush())
        out = torch.cat(chunks, dim=1)
    else:
        out = tok.decode(codes)
    seconds = time.perf_counter() - t0
    save_wav(args.out, out[0], tok.sample_rate)
    print(json.dumps({"out": str(args.out), "tokens": int(codes.shape[1]), "audio_s": round(out.shape[1] / 24000, 3),
                      "synthesis_s": round(seconds, 3), "first_audio_s": None if first is None else round(first, 3)}))
    return 0
