"""The decoder's training step on the CPU: eager vs ``torch.compile`` (issue 11's throughput lever).

The model has the shape of the toy recipe's decoder (``configs/toyworld/full.yaml``: dim 256, 6 layers,
8 heads / 4 KV heads, FFN 768, swin-norm, QK-norm, vocabulary 2,176), random weights, fp32. One step is what
the trainer's inner loop does: forward on a ``[batch, seq]`` row of random token ids, next-token cross-entropy
over all positions, backward, gradient clipping at 1.0 and an AdamW update. ``compile`` wraps the model in
``torch.compile`` (inductor, default mode); the loss, clipping and optimizer stay eager in both cases, so the
difference is the model's forward and backward.

Each (threads, mode) pair runs in its own subprocess with ``OMP_NUM_THREADS`` and ``torch.set_num_threads``
set, so thread counts do not leak. The first ``--warmup`` steps (which include compilation) are not timed; the
compilation time is reported separately (wall time of the first step minus a timed step). steps/s and tokens/s
are from the median timed step; the ratio is compile / eager. On a shared machine, read the CPU-time columns.

    .venv/bin/python benchmarks/train_step_compile.py                   # 1 and 2 threads, batch 8 x 512
    .venv/bin/python benchmarks/train_step_compile.py --batch 4 --seq 256 --steps 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name

from aromni.models import Decoder, DecoderConfig

MODEL = dict(vocab_size=2176, dim=256, n_layers=6, n_heads=8, n_kv_heads=4, ffn_dim=768, max_seq_len=512,
             swin_norm=True)


def worker(args: argparse.Namespace) -> dict[str, float | int | str]:
    """Time ``args.steps`` steps after ``args.warmup`` untimed ones, in this process."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(**{**MODEL, "max_seq_len": max(MODEL["max_seq_len"], args.seq)}))
    model.init_weights(0.02, generator=torch.Generator().manual_seed(0))
    model.train()
    run = torch.compile(model) if args.mode == "compile" else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    gen = torch.Generator().manual_seed(1)
    wall, cpu = [], []
    for _ in range(args.warmup + args.steps):
        tokens = torch.randint(0, MODEL["vocab_size"], (args.batch, args.seq + 1), generator=gen)
        t0, c0 = time.perf_counter(), time.process_time()
        logits = run(tokens[:, :-1])  # [B, T, V]
        targets = tokens[:, 1:].reshape(-1)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    timed, timed_cpu = wall[args.warmup:], cpu[args.warmup:]
    step = statistics.median(timed)
    return {"mode": args.mode, "threads": args.threads, "first_step_s": round(wall[0], 2),
            "compile_s": round(wall[0] - step, 2), "step_s": round(step, 4),
            "steps_per_s": round(1 / step, 3),
            "tokens_per_s": round(args.batch * args.seq / step, 1),
            "cpu_s_per_step": round(statistics.median(timed_cpu), 4), "loss": round(float(loss), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps (compilation happens here)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--mode", choices=("eager", "compile"), help=argparse.SUPPRESS)  # worker only
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(worker(argparse.Namespace(**{**vars(args), "threads": args.threads[0]}))))
        return
    rows = []
    for threads in args.threads:
        for mode in ("eager", "compile"):
            cmd = [sys.executable, __file__, "--mode", mode, "--threads", str(threads),
                   "--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps),
                   "--warmup", str(args.warmup)]
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if out.returncode != 0:
                raise SystemExit(f"{mode} worker ({threads} threads) failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"train step, toy decoder {MODEL}, batch {args.batch} x "
          f"{args.seq}, fp32, {cpu_name()}, torch {torch.__version__}")
    print(f"{'threads':>7} {'mode':>8} {'steps/s':>8} {'tokens/s':>9} {'CPU s/step':>10} {'compile s':>9} "
          f"{'ratio':>6}")
    for r in rows:
        eager = next(e for e in rows if e["threads"] == r["threads"] and e["mode"] == "eager")
        ratio = r["steps_per_s"] / eager["steps_per_s"]
        compiled = r["compile_s"] if r["mode"] == "compile" else ""
        print(f"{r['threads']:>7} {r['mode']:>8} {r['steps_per_s']:>8.3f} {r['tokens_per_s']:>9.0f} "
              f"{r['cpu_s_per_step']:>10.3f} {compiled:>9} {ratio:>6.2f}")
    if args.json:
        result = {"model": MODEL, "batch": args.batch, "seq": args.seq, "cpu": cpu_name(),
                  "torch": torch.__version__, "runs": rows}
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
