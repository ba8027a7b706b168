"""The decoder's linear layers under each weight format: float32, bfloat16, int8 weight-only, int4 weight-only and
w8a8 (issue 14's "int4 if it pays").

One decode step multiplies the activations of ``B`` rows by every linear weight of the model once. This script
builds all of them (a preset's shapes: per block the fused q/k/v, the output projection, the fused gate/up and the
down projection, then the LM head), each a distinct tensor, so the step reads the weights from memory as a real
step does (one matrix timed in a loop would sit in the cache), and times the whole pass per format:

* ``fp32`` / ``bf16``: ``x @ W.T``;
* ``int8``: ``aten._weight_int8pack_mm`` with bfloat16 activations (``--quantize int8``);
* ``int4``: ``aten._weight_int4pack_mm_for_cpu``, 4-bit weights in groups of ``--group`` input channels with a
  bfloat16 scale and zero point per group (the kernel gpt-fast's int4 uses), bfloat16 activations;
* ``w8a8``: activations rounded to int8 per row, ``torch._int_mm`` (``--quantize w8a8``).

Reported per format and batch: milliseconds for all the layers (the 10th percentile of ``--repeats`` passes),
the weight bytes read, and the GB/s that implies. The random weights make the values meaningless; only the
time is measured.

    .venv/bin/python benchmarks/linear_kernels.py                       # 100m preset, batch 1 and 8, 1 thread
    .venv/bin/python benchmarks/linear_kernels.py --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import cpu_name

from aromni.models import DecoderConfig


def layer_shapes(cfg: DecoderConfig) -> list[tuple[int, int]]:
    """``(out, in)`` of every linear layer of one decode step, in order."""
    d, hd = cfg.dim, cfg.head_dim
    block = [((cfg.n_heads + 2 * cfg.n_kv_heads) * hd, d), (d, cfg.n_heads * hd), (2 * cfg.ffn_dim, d),
             (d, cfg.ffn_dim)]
    return block * cfg.n_layers + [(cfg.vocab_size, d)]


def build(fmt: str, shapes: list[tuple[int, int]], group: int, gen: torch.Generator
          ) -> tuple[list[Callable[[torch.Tensor], torch.Tensor]], int]:
    """One product function per layer for ``fmt`` and the bytes their weights occupy."""
    fns: list[Callable[[torch.Tensor], torch.Tensor]] = []
    nbytes = 0
    for out, inp in shapes:
        w = torch.randn(out, inp, generator=gen) * 0.02
        if fmt in ("fp32", "bf16"):
            wt = w if fmt == "fp32" else w.bfloat16()
            fns.append(lambda x, wt=wt: x.to(wt.dtype) @ wt.t())
            nbytes += wt.numel() * wt.element_size()
            continue
        if fmt in ("int8", "w8a8"):
            scale = w.abs().amax(dim=1) / 127
            q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
            nbytes += q.numel() + 4 * scale.numel()
            if fmt == "int8":
                sb = scale.bfloat16()
                fns.append(lambda x, q=q, sb=sb: torch.ops.aten._weight_int8pack_mm(x.bfloat16(), q, sb))
            else:
                def w8a8(x: torch.Tensor, q: torch.Tensor = q, scale: torch.Tensor = scale) -> torch.Tensor:
                    a = x.abs().amax(dim=1, keepdim=True) / 127
                    return torch._int_mm(torch.round(x / a).to(torch.int8), q.t()).float() * a * scale
                fns.append(w8a8)
            continue
        v, s, z = int4_quantize(w, group)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(v, 1)
        sz = torch.stack([s, z], dim=2).transpose(0, 1).contiguous().bfloat16()  # [in / group, out, 2]
        fns.append(lambda x, p=packed, sz=sz: torch.ops.aten._weight_int4pack_mm_for_cpu(x.bfloat16(), p, group, sz))
        nbytes += out * inp // 2 + sz.numel() * 2
    return fns, nbytes


def int4_quantize(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 per group of ``group`` input channels: values ``v [out, in]`` in 0..15 meaning
    ``(v - 8) * s + z``, with ``s, z [out, in / group]``."""
    out, inp = w.shape
    g = w.reshape(out, inp // group, group)
    lo, hi = g.amin(dim=2), g.amax(dim=2)
    s = ((hi - lo) / 15).clamp(min=1e-8)
    z = lo + 8 * s
    v = torch.round((g - lo[..., None]) / s[..., None]).clamp(0, 15).to(torch.int32).reshape(out, inp)
    return v, s, z


def check_int4(group: int) -> float:
    """Relative error of the int4 kernel against the dequantized weights it should multiply (a layout check:
    bfloat16 rounding only when the packing is right)."""
    w = torch.randn(64, 2 * group, generator=torch.Generator().manual_seed(1)) * 0.02
    (fn,), _ = build("int4", [(64, 2 * group)], group, torch.Generator().manual_seed(1))
    v, s, z = int4_quantize(w, group)
    deq = ((v.reshape(64, 2, group).float() - 8) * s.bfloat16().float()[..., None]
           + z.bfloat16().float()[..., None]).reshape(64, 2 * group)
    x = torch.randn(3, 2 * group, generator=torch.Generator().manual_seed(2))
    ref = x.bfloat16().float() @ deq.t()
    return float((fn(x).float() - ref).norm() / ref.norm())


def time_pass(fns: list[Callable[[torch.Tensor], torch.Tensor]], shapes: list[tuple[int, int]], batch: int,
              repeats: int) -> float:
    xs = {inp: torch.randn(batch, inp) for _, inp in shapes}
    for _ in range(2):
        for fn, (_, inp) in zip(fns, shapes):
            fn(xs[inp])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for fn, (_, inp) in zip(fns, shapes):
            fn(xs[inp])
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 10]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="100m", help="decoder preset (default 100m)")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--formats", default="fp32,bf16,int8,int4,w8a8")
    ap.add_argument("--group", type=int, default=128, help="int4 group size (input channels per scale)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = DecoderConfig.preset(args.config)
    shapes = layer_shapes(cfg)
    err = check_int4(args.group)
    if err > 0.02:
        raise SystemExit(f"the int4 kernel does not multiply the weights we packed (relative error {err:.3f})")
    rows = []
    for fmt in args.formats.split(","):
        fns, nbytes = build(fmt, shapes, args.group, torch.Generator().manual_seed(0))
        for b in (int(v) for v in args.batches.split(",")):
            t = time_pass(fns, shapes, b, args.repeats)
            rows.append({"format": fmt, "batch": b, "ms": 1e3 * t, "weight_MB": nbytes / 1e6,
                         "GB_s": nbytes / t / 1e9})
        del fns
    print(f"{args.config}: {len(shapes)} linear layers, {sum(o * i for o, i in shapes) / 1e6:.1f} M weights; "
          f"{cpu_name()}, {args.threads} thread(s), torch {torch.__version__}; int4 layout check error {err:.4f}")
    fp32 = {r["batch"]: r["ms"] for r in rows if r["format"] == "fp32"}
    print(f"{'format':>6} {'B':>3} {'ms':>8} {'weight MB':>10} {'GB/s':>6} {'x fp32':>7}")
    for r in rows:
        x = f"{fp32[r['batch']] / r['ms']:7.2f}" if r["batch"] in fp32 else "      -"
        print(f"{r['format']:>6} {r['batch']:>3} {r['ms']:8.2f} {r['weight_MB']:10.1f} {r['GB_s']:6.1f} {x}")
    if args.json:
        args.json.write_text(json.dumps({"config": args.config, "cpu": cpu_name(), "threads": args.threads,
                                         "torch": torch.__version__, "int4_check": err, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
