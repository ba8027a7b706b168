"""The decoder's linear layers under each weight format: float32, bfloat16, int8 weight-only, int4 weight-only and
w8a8 (issue 14's "int4 if it pays").

One decode step multiplies the activations of ``B`` rows by every linear weight of the model once. This script
builds all of them (a preset's shapes: per block the fused q/k/v, the output projection, the fused gate/up and the
down projection, then the LM head), each a distinct tensor, so the step reads the weights from memory as a real
step does (one matrix timed in a loop would sit in the cache), and times the whole pass per format:

* ``fp32`` / ``bf16``: ``x @ W.T``;
* ``int8``: the package's weight-only int8 layer (``aten._weight_int8pack_mm``, bfloat16 activations;
  ``--quantize int8``);
* ``int4``: its int4 layer (``aten._weight_int4pack_mm_for_cpu``, 4-bit weights in groups of ``--group`` input
  channels with a bfloat16 scale and zero point per group, bfloat16 activations; ``--quantize int4``);
* ``w8a8``: its w8a8 layer (activations rounded to int8 per row, ``torch._int_mm``; ``--quantize w8a8``).

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
from torch import nn

from aromni.models import DecoderConfig
from aromni.models.int4 import Int4Linear, int4_quantize
from aromni.models.quantize import Int8Linear


def layer_shapes(cfg: DecoderConfig) -> list[tuple[int, int]]:
    """``(out, in)`` of every linear layer of one decode step, in order."""
    d, hd = cfg.dim, cfg.head_dim
    block = [((cfg.n_heads + 2 * cfg.n_kv_heads) * hd, d), (d, cfg.n_heads * hd), (2 * cfg.ffn_dim, d),
             (d, cfg.ffn_dim)]
    return block * cfg.n_layers + [(cfg.vocab_size, d)]


def build(fmt: str, shapes: list[tuple[int, int]], group: int, gen: torch.Generator
          ) -> tuple[list[Callable[[torch.Tensor], torch.Tensor]], int]:
    """One product function per layer for ``fmt`` (the package's own layers) and the bytes their weights occupy."""
    fns: list[Callable[[torch.Tensor], torch.Tensor]] = []
    nbytes = 0
    for out, inp in shapes:
        lin = nn.Linear(inp, out, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(out, inp, generator=gen) * 0.02)
        layer: nn.Module
        if fmt in ("fp32", "bf16"):
            layer = lin if fmt == "fp32" else lin.to(torch.bfloat16)
            fns.append(lambda x, layer=layer: layer(x.to(layer.weight.dtype)))
        elif fmt in ("int8", "w8a8"):
            layer = Int8Linear.from_linear(lin, "int8" if fmt == "w8a8" else "float")
            fns.append(layer)
        else:
            layer = Int4Linear.from_linear(lin, group)
            fns.append(layer)
        nbytes += sum(b.numel() * b.element_size() for b in [*layer.parameters(), *layer.buffers()])
    return fns, nbytes


def check_int4(group: int) -> float:
    """Relative error of the int4 layer against the dequantized weights it should multiply (a layout check:
    bfloat16 rounding only when the packing is right)."""
    w = torch.randn(64, 2 * group, generator=torch.Generator().manual_seed(1)) * 0.02
    (fn,), _ = build("int4", [(64, 2 * group)], group, torch.Generator().manual_seed(1))
    v, s, z = int4_quantize(w, group)
    deq = ((v.reshape(64, 2, group).float() - 8) * s.bfloat16().float()[..., None]
           + z.bfloat16().float()[..., None]).reshape(64, 2 * group)
    x = torch.randn(3, 2 * group, generator=torch.Generator().manual_seed(2))
    ref = x.bfloat16().float() @ deq.t()
    with torch.no_grad():
        return float((fn(x).float() - ref).norm() / ref.norm())


def time_pass(fns: list[Callable[[torch.Tensor], torch.Tensor]], shapes: list[tuple[int, int]], batch: int,
              repeats: int) -> float:
    xs = {inp: torch.randn(batch, inp) for _, inp in shapes}
    torch.set_grad_enabled(False)
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
    ap.add_argument("--group", type=int, default=32, help="int4 group size (input channels per scale; default 32 "
                    "as --quantize int4)")
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
