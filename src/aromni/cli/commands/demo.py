"""``aromni demo``: the first thing a new user runs.

With the shipped toy bundle it runs every task end to end (see :mod:`aromni.toyworld.demo`). Without one it
runs the decoder on a randomly initialised tiny model — prefill, cached decoding, and a check that cached
decoding equals the full forward — and says plainly that this is what it did.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from aromni.cli.common import positive_int, seed_int
from aromni.errors import InputError
from aromni.models import Decoder, DecoderConfig
from aromni.toyworld.demo import find_bundle, run_demo
from aromni.utils.io import atomic_write_json
from aromni.vocab.layout import VocabLayout


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the shipped toy model through every task (or a random-weight smoke run)")
    p.add_argument("--out", default="demo_out", help="directory for the outputs (default: demo_out)")
    p.add_argument("--model", default=None, help="bundle to run: a directory, or 'toy' (default: the shipped toy bundle)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--threads", type=positive_int, default=1,
                   help="CPU threads for torch (default 1: the toy model is fastest on one thread)")
    p.add_argument("--random", action="store_true", help="skip the bundle and run the random-weight decoder check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    if not args.random:
        bundle = args.model or find_bundle()
        if bundle is not None:
            return run_demo(bundle, Path(args.out), seed=args.seed)
        print("No trained toy bundle is available in this installation, so this demo runs the decoder on a "
              "RANDOMLY INITIALISED tiny model (its outputs are meaningless tokens).")
    return random_decoder_demo(Path(args.out), seed=args.seed)


def random_decoder_demo(out: Path, seed: int = 0) -> int:
    """Prefill + cached decode of a random tiny decoder; verify cached == full forward; write a summary."""
    torch.manual_seed(seed)
    layout = VocabLayout.compact(n_text=256, n_image=64, n_speech=128)
    cfg = DecoderConfig.preset("tiny", vocab_size=layout.vocab_size)
    model = Decoder(cfg)
    model.init_weights(generator=torch.Generator().manual_seed(seed))
    model.eval()
    prompt = torch.tensor([[layout.bos, *range(layout.text_ids[0], layout.text_ids[0] + 15)]])
    new_tokens = 32
    model.setup_caches(1, prompt.shape[1] + new_tokens)
    t0 = time.perf_counter()
    with torch.inference_mode():
        logits = model(prompt, input_pos=torch.arange(prompt.shape[1]), logits_to_keep=1)
        t_prefill = time.perf_counter() - t0
        tokens = [int(logits[0, -1].argmax())]
        t1 = time.perf_counter()
        for i in range(new_tokens - 1):
            pos = torch.tensor([prompt.shape[1] + i])
            logits = model(torch.tensor([[tokens[-1]]]), input_pos=pos)
            tokens.append(int(logits[0, -1].argmax()))
        t_decode = time.perf_counter() - t1
        full = model.__class__(cfg)
        full.load_state_dict(model.state_dict())
        seq = torch.cat([prompt, torch.tensor([tokens[:-1]])], dim=1)
        greedy_full = full.eval()(seq)[0, prompt.shape[1] - 1:].argmax(-1).tolist()
    agree = greedy_full == tokens
    summary = {
        "mode": "random-weights decoder smoke run (no trained bundle)",
        "params": sum(p.numel() for p in model.parameters()),
        "prompt_tokens": int(prompt.shape[1]),
        "generated_tokens": new_tokens,
        "prefill_ms": round(t_prefill * 1e3, 2),
        "decode_tokens_per_s": round((new_tokens - 1) / t_decode, 1),
        "cached_equals_full_forward": agree,
        "generated_ids": tokens,
    }
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a directory", "choose an empty or new --out directory")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "summary.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "generated_ids"}, indent=2))
    print(f"wrote {out / 'summary.json'}")
    return 0 if agree else 1
