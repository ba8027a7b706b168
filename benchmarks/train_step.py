"""Training-step speed and memory: aromni's trainer vs transformers' Chameleon + Hugging Face ``Trainer``.

Both sides train the same model (same architecture and the same random initial weights, copied through aromni's
HF writer) on the same samples with the same batch shape, fp32 on the CPU, AdamW, a linear schedule with warmup
and gradient clipping at 1.0:

* ours: the real :class:`aromni.training.trainer.Trainer` (parquet shards, mixing, packing into ``[batch, seq]``
  rows with block-diagonal attention, the fused LM-head loss): ``setup()`` then ``train_step`` per step, as
  ``fit()`` runs them;
* theirs (the official stack's approach): ``ChameleonForConditionalGeneration`` (SDPA attention) trained by
  ``transformers.Trainer``, ``batch`` samples per step padded to the longest (pad labels -100), as the official
  AR-Omni pretrain script batches.

``--lengths fixed``: every sample has exactly ``seq`` inputs, so both sides process identical ``[batch, seq]``
tensors and the comparison is of the step itself. ``--lengths variable`` (default): sample lengths are uniform in
``[seq/8, seq]``, like mixed text/speech/image data; the official approach pads, ours packs.

Each side runs in its own subprocess (so peak RSS is its own), alternating, ``--repeats`` times. tokens/s = trained
target tokens (non-padding) of the timed steps / their wall time; a step lasts from the end of the previous step to
the end of this one (data, forward, backward, clipping, optimizer, scheduler, bookkeeping); the first
``--warmup`` steps of each run are not timed. tokens per CPU-second divides by the process CPU time instead (less
sensitive to other load on a shared machine). Memory: peak RSS of the process (``ru_maxrss``) and its growth from
just before the first step.

    .venv/bin/python benchmarks/train_step.py                           # toy-size model, variable lengths
    .venv/bin/python benchmarks/train_step.py --lengths fixed           # identical tensors on both sides
    .venv/bin/python benchmarks/train_step.py --size tiny --json out.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ----------------------------------------------------------------------------- shared inputs
def prepare(args: argparse.Namespace, root: Path) -> None:
    """Write the shards (ours), the token rows (theirs) and the initial weights in both layouts."""
    from aromni.models import Decoder, DecoderConfig
    from aromni.models.checkpoint import save_checkpoint
    from aromni.training.data.shards import Sample, write_manifest, write_samples
    from aromni.vocab.layout import VocabLayout

    layout = VocabLayout.compact(n_text=args.vocab - 16 - 64, n_image=64, n_speech=0, pad_to_multiple=1)
    cfg = DecoderConfig(vocab_size=layout.vocab_size, dim=args.dim, n_layers=args.layers, n_heads=args.heads,
                        n_kv_heads=args.heads, ffn_dim=args.ffn, max_seq_len=args.seq + 1)
    model = Decoder(cfg)
    model.init_weights(0.02, generator=torch.Generator().manual_seed(0))
    save_checkpoint(model, root / "ours_init", "aromni", layout=layout)
    save_checkpoint(model, root / "hf_init", "hf", extra_config={"vocabulary_map": {}, "vq_config": {
        "embed_dim": 8, "num_embeddings": 16, "latent_channels": 32, "resolution": 32, "base_channels": 32,
        "channel_multiplier": [1], "num_res_blocks": 1, "attn_resolutions": []}})
    n = args.batch * (args.steps + 2) * args.repeats * 2
    lo, hi = layout.text_runs[0]
    rng = np.random.default_rng(0)
    if args.lengths == "fixed":
        lengths = np.full(n, args.seq + 1)
    else:
        lengths = rng.integers(max(2, args.seq // 8), args.seq + 1, size=n) + 1  # ids; inputs = ids - 1
    samples = [rng.integers(lo, hi, size=int(L)) for L in lengths]
    rows = [Sample(r, np.ones_like(r, dtype=bool), [], "text", "text", f"s{i}") for i, r in enumerate(samples)]
    write_samples(root / "shards", "train", rows)
    write_manifest(root / "shards", layout, {"train": {"rows": n}}, {})
    np.savez(root / "samples.npz", flat=np.concatenate(samples), lengths=lengths, pad=layout.eos)


# ----------------------------------------------------------------------------- workers
def worker_ours(args: argparse.Namespace, root: Path) -> dict:
    from aromni.training.recipes import pretrain
    from aromni.training.trainer import Trainer

    overrides = {"out": tempfile.mkdtemp(prefix="ours_run_", dir=root), "num_threads": args.threads,
                 "data.root": str(root / "shards"), "data.seq_len": args.seq, "data.micro_batch": args.batch,
                 "data.mixing.ratios": "{text: 1}", "data.mixing.exhaust": "cycle",
                 "model.init_from": str(root / "ours_init"), "perceptual.enabled": False, "optim.lr": 1e-4,
                 "optim.max_steps": args.steps, "optim.weight_decay": 0.0, "optim.grad_clip": 1.0,
                 "optim.warmup_steps": max(1, round(0.05 * args.steps)), "checkpoint.resume": "none",
                 "log.progress": False, "loss.chunk_size": args.chunk, "precision": args.precision,
                 "model.compile": args.compile}
    trainer = Trainer(pretrain.config(None, [f"{k}={v}" for k, v in overrides.items()]))
    trainer.setup()
    start_rss = rss_mb()
    times, cpu, losses, tokens = [], [], [], []
    t_prev, c_prev = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        rec = trainer.loop.train_step()  # one optimizer step as fit() runs it (data, forward, backward, AdamW)
        now, c_now = time.perf_counter(), time.process_time()
        times.append(now - t_prev)
        cpu.append(c_now - c_prev)
        t_prev, c_prev = now, c_now
        losses.append(rec["ntp"])
        tokens.append(rec["tokens"])
    trainer.logger.close()
    return {"times": times, "cpu": cpu, "losses": losses, "tokens": tokens, "start_rss_mb": start_rss,
            "peak_rss_mb": peak_rss_mb()}


def worker_hf(args: argparse.Namespace, root: Path) -> dict:
    import transformers
    from transformers import ChameleonForConditionalGeneration, Trainer, TrainerCallback, TrainingArguments
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    model = ChameleonForConditionalGeneration.from_pretrained(root / "hf_init", attn_implementation="sdpa",
                                                              dtype=torch.float32)
    data = np.load(root / "samples.npz")
    starts = np.concatenate([[0], np.cumsum(data["lengths"])])
    samples = [torch.from_numpy(data["flat"][a:b]) for a, b in itertools.pairwise(starts)]
    pad_id = int(data["pad"])
    tokens: list[int] = []

    class Samples(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(samples)

        def __getitem__(self, i: int) -> torch.Tensor:
            return samples[i]

    def collate(batch: list[torch.Tensor]) -> dict:
        # Pad to the longest sample (official: pad id 2 = eos, labels -100 on padding).
        T = max(len(x) for x in batch)
        ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), T), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), T), dtype=torch.long)
        for i, x in enumerate(batch):
            ids[i, :len(x)], labels[i, :len(x)], mask[i, :len(x)] = x, x, 1
        tokens.append(sum(len(x) - 1 for x in batch))  # trained targets
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    times, cpu, losses, state = [], [], [], {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            state["start_rss"] = rss_mb()
            state["t"], state["c"] = time.perf_counter(), time.process_time()

        def on_step_end(self, *a, **k):
            now, c_now = time.perf_counter(), time.process_time()
            times.append(now - state["t"])
            cpu.append(c_now - state["c"])
            state["t"], state["c"] = now, c_now

        def on_log(self, _args, _state, _control, logs=None, **k):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    targs = TrainingArguments(output_dir=str(root / "hf_run"), per_device_train_batch_size=args.batch,
                              max_steps=args.steps, learning_rate=1e-4, lr_scheduler_type="linear",
                              warmup_steps=max(1, round(0.05 * args.steps)), weight_decay=0.0, max_grad_norm=1.0,
                              logging_steps=1,
                              save_strategy="no", report_to="none", use_cpu=True, dataloader_num_workers=0,
                              disable_tqdm=True, seed=0, optim="adamw_torch", bf16=args.precision == "bf16",
                              torch_compile=args.hf_compile)
    Trainer(model=model, args=targs, train_dataset=Samples(), data_collator=collate, callbacks=[Clock()]).train()
    return {"times": times, "cpu": cpu, "losses": losses, "tokens": tokens[:len(times)],
            "start_rss_mb": state["start_rss"],
            "peak_rss_mb": peak_rss_mb(),
            "transformers": transformers.__version__}


# ----------------------------------------------------------------------------- driver
def run_worker(kind: str, args: argparse.Namespace, root: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--root", str(root)] + [
        f"--{k}={v}" for k, v in vars(args).items() if k in ("dim", "layers", "heads", "ffn", "vocab", "batch",
                                                            "seq", "steps", "threads", "chunk", "repeats",
                                                            "lengths", "size", "precision")]
    cmd += [f"--{k.replace('_', '-')}" for k in ("compile", "hf_compile") if getattr(args, k)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compute_limit(args: argparse.Namespace) -> dict:
    """The step's compute limit: its model FLOPs (6 x the matmul parameters per trained token, plus causal
    attention, 6 x layers x seq x dim) at the rate of the model's largest matmul ``[batch*seq, dim] @
    [dim, 2*ffn]`` in the run's precision on this CPU (best of 5, in a subprocess with the run's threads)."""
    code = (f"import torch,time; torch.set_num_threads({args.threads}); "
            f"dt=torch.{'bfloat16' if args.precision == 'bf16' else 'float32'}; "
            f"a=torch.randn({args.batch * args.seq},{args.dim},dtype=dt); b=torch.randn({args.dim},{2 * args.ffn},"
            "dtype=dt); a@b; best=1e9\nfor _ in range(5):\n t=time.perf_counter(); a@b; "
            "best=min(best,time.perf_counter()-t)\nprint(2*a.shape[0]*a.shape[1]*b.shape[1]/best)")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rate = float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                env=env).stdout)
    d, L, f, V = args.dim, args.layers, args.ffn, args.vocab
    matmul_params = L * (4 * d * d + 3 * d * f) + V * d  # qkv + o (n_kv_heads = n_heads here), SwiGLU, LM head
    flops_per_token = 6 * matmul_params + 6 * L * args.seq * d
    return {"matmul_flop_s": rate, "flops_per_token": flops_per_token, "limit_tokens_per_s": rate / flops_per_token}


def summarize(runs: list[dict], args: argparse.Namespace) -> dict:
    w = args.warmup
    toks = sum(sum(r["tokens"][w:]) for r in runs)
    wall = sum(sum(r["times"][w:]) for r in runs)
    cpu = sum(sum(r["cpu"][w:]) for r in runs)
    n = sum(len(r["times"][w:]) for r in runs)
    return {"tokens_per_s": toks / wall, "tokens_per_cpu_s": toks / cpu, "mean_step_s": wall / n,
            "tokens_per_step": toks / n, "steps_timed": n,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "rss_growth_mb": max(r["peak_rss_mb"] - r["start_rss_mb"] for r in runs),
            "first_loss": runs[0]["losses"][0] if runs[0]["losses"] else None}


SIZES = {  # name: (dim, layers, heads, ffn, vocab)
    "tiny": (64, 2, 4, 176, 512),  # the "tiny" decoder preset (n_kv_heads = n_heads here)
    "toy": (256, 6, 8, 704, 4096),  # toy-world scale (toyworld-feasibility.md: d=256, 6 layers)
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="toy", help="model size preset (overridable below)")
    p.add_argument("--dim", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--ffn", type=int)
    p.add_argument("--vocab", type=int)
    p.add_argument("--lengths", choices=["variable", "fixed"], default="variable")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--chunk", type=int, default=0, help="our loss.chunk_size")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="both sides: bf16 autocast (ours precision=bf16, transformers bf16=True)")
    p.add_argument("--compile", action="store_true", help="ours: model.compile=true (each block torch.compile'd)")
    p.add_argument("--hf-compile", action="store_true", help="transformers: TrainingArguments(torch_compile=True)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", choices=["ours", "hf"], help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    args = p.parse_args()
    for k, v in zip(("dim", "layers", "heads", "ffn", "vocab"), SIZES[args.size]):
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.worker:
        fn = worker_ours if args.worker == "ours" else worker_hf
        print(json.dumps(fn(args, Path(args.root))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prepare(args, root)
        runs: dict[str, list[dict]] = {"ours": [], "hf": []}
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            for kind in ("ours", "hf"):
                runs[kind].append(run_worker(kind, args, root))
    res = {k: summarize(v, args) for k, v in runs.items()}
    limit = compute_limit(args)
    hf_version = runs["hf"][0].get("transformers")
    device = f"CPU: {cpu_name()}, {args.threads} thread(s), torch {torch.__version__}"
    speedup = res["ours"]["tokens_per_s"] / res["hf"]["tokens_per_s"]
    print(f"device: {device}; transformers {hf_version}")
    print(f"model: dim {args.dim}, {args.layers} layers, {args.heads} heads, ffn {args.ffn}, vocab {args.vocab}; "
          f"batch {args.batch} x seq {args.seq}, {args.lengths} sample lengths; {args.precision}; "
          f"{args.repeats} x {args.steps} steps, first {args.warmup} of each run untimed")
    print(f"{'':45s}{'tokens/s':>10s}{'tok/CPU-s':>11s}{'step (s)':>10s}{'tok/step':>10s}{'peak RSS MB':>13s}"
          f"{'RSS growth MB':>15s}{'loss@1':>9s}")
    names = {"ours": "aromni Trainer" + (" (compiled)" if args.compile else ""),
             "hf": "transformers Chameleon + Trainer" + (" (compiled)" if args.hf_compile else "")}
    for k in ("ours", "hf"):
        r = res[k]
        print(f"{names[k]:45s}{r['tokens_per_s']:10.0f}{r['tokens_per_cpu_s']:11.0f}{r['mean_step_s']:10.3f}"
              f"{r['tokens_per_step']:10.0f}{r['peak_rss_mb']:13.0f}"
              f"{r['rss_growth_mb']:15.0f}{r['first_loss']:9.4f}")
    cpu_speedup = res["ours"]["tokens_per_cpu_s"] / res["hf"]["tokens_per_cpu_s"]
    print(f"speed-up: {speedup:.2f}x wall-clock, {cpu_speedup:.2f}x per CPU-second")
    print(f"compute limit: {limit['limit_tokens_per_s']:.0f} tokens/s ({limit['matmul_flop_s'] / 1e9:.0f} GFLOP/s "
          f"{args.precision} matmul, {limit['flops_per_token'] / 1e6:.1f} MFLOP per token); ours at "
          f"{res['ours']['tokens_per_s'] / limit['limit_tokens_per_s']:.0%}, transformers at "
          f"{res['hf']['tokens_per_s'] / limit['limit_tokens_per_s']:.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "transformers": hf_version, "args": vars(args),
                                               "results": res, "speedup": speedup, "cpu_speedup": cpu_speedup,
                                               "compute_limit": limit,
                                               "raw": runs}, indent=2))


if __name__ == "__main__":
    main()
