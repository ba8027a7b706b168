"""OmniVIVO parallel decoding vs sequential: one joint loop for image + speech, against the image first and then
the speech.

Both arms run the same random-weight :class:`~aromni.omnivivo.vivo_model.VivoModel` (timing only: the weights are
random, so the images and the speech mean nothing), on the same captions, with the same sampling settings and
seeds, in the same process:

* **parallel**: ``collect(generate(model, feats, mask, ...))``, the joint loop of ``vivo_generate``: per step ONE
  backbone call on the image CFG rows (``2B``, LoRA off) and the speech rows (``B``, LoRA on), then the speech
  branch on the speech rows;
* **sequential**: ``generate_images(model.backbone, ...)`` under ``lora_rows(model.backbone, 0.0)`` (the adapter
  skipped: LlamaGen's own sampler on the bare backbone's function, ``2B`` rows), then the speech alone with the
  joint loop's speech-only mode, ``generate(..., image=False)`` (plain TTS: ``B`` rows, LoRA on, then the branch).
  ``vivo_generate`` has no other speech-only decoder; this is the one it documents.

Every prompt speaks exactly ``N`` codes in both arms (``min_len = max_len = N``: EOS is masked until ``min_len``,
so the stream stops at ``max_len``); ``N`` defaults to the image's ``block_size``, the case where the two streams
overlap completely (``--speech-tokens`` changes it). Reported per size and batch: wall time of each arm (best of
``--reps`` runs after one warm-up of each, the arms alternating which goes first; medians in the JSON),
``ratio = sequential / parallel`` (above 1: parallel is faster), and whether the image codes of the two arms are
equal (they must be: the joint loop preserves LlamaGen's images; the exit status is 1 if any differ; on an
accelerator this also needs batch-size-invariant matmul kernels, see ``vivo_generate``) and the speech codes too
(informational). ``(image s + speech s)`` are the sequential arm's two parts, each the best of its runs.

Sizes (``--sizes``): ``toy`` is the ``toy`` t2i preset (1.1 M backbone, 64 image codes, 16 caption slots) with the
toy world's speech path (``configs/omnivivo/toy_speech.yaml``: 2 branch blocks, LoRA r 16, K 1024); ``gpt-b-64``
is LlamaGen's GPT-B (12 blocks of width 768, 16384 image codes, 120 caption slots of 2048 features) with an 8x8
grid (``block_size`` 64, so a run fits a CPU) and 3 branch blocks (about GPT-XL's 8 branch blocks over 36 in
proportion), LoRA r 16, K 4096.

    .venv/bin/python benchmarks/vivo_parallel.py                          # toy + gpt-b-64, B 1 and 4, 2 threads
    .venv/bin/python benchmarks/vivo_parallel.py --sizes toy --reps 5 --threads 1 --json vivo.json
    .venv/bin/python benchmarks/vivo_parallel.py --device cuda --sizes gpt-b-64 --speech-tokens 128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from _common import cpu_name

from aromni.omnivivo.lora import LoRAConfig, lora_parameters, lora_rows
from aromni.omnivivo.ras import SpeechSampling
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_generate import T2ISampling, generate_images
from aromni.omnivivo.t2i_model import T2IBackbone, left_pad_captions
from aromni.omnivivo.vivo_config import VivoConfig
from aromni.omnivivo.vivo_generate import VivoOutput, collect, generate
from aromni.omnivivo.vivo_model import VivoModel
from aromni.utils.device import resolve_device


@dataclass(frozen=True)
class Size:
    """A benchmark size: a t2i preset with overrides, and the speech path's settings."""

    preset: str
    overrides: dict
    speech_vocab: int
    branch_layers: int
    lora_r: int = 16


SIZES: dict[str, Size] = {
    "toy": Size("toy", {}, speech_vocab=1024, branch_layers=2),
    "gpt-b-64": Size("GPT-B", {"block_size": 64}, speech_vocab=4096, branch_layers=3),
}


def build_model(size: Size, max_speech_len: int, device: torch.device, seed: int) -> VivoModel:
    """A random-weight VivoModel. The image and speech heads are scaled up (peaked distributions), and LoRA's ``B``
    is drawn non-zero, so the codes follow the logits and an image row that saw the adapter would change."""
    torch.manual_seed(seed)  # the branch's init draws from the global generator
    g = torch.Generator().manual_seed(seed)
    backbone = T2IBackbone(T2IConfig.preset(size.preset, **size.overrides)).eval()
    backbone.init_weights(generator=g, zero_output=False)
    cfg = VivoConfig(speech_vocab=size.speech_vocab, branch_layers=size.branch_layers,
                     lora=LoRAConfig(r=size.lora_r, alpha=float(size.lora_r)),
                     max_speech_len=max(max_speech_len, 1))
    model = VivoModel(backbone, cfg, generator=g)
    with torch.no_grad():
        backbone.output.weight.mul_(20)
        model.branch.head.weight.mul_(20)
        for p in lora_parameters(model.backbone)[1::2]:
            p.normal_(0.0, 0.02, generator=g)
    return model.to(device).eval()


def captions(cfg: T2IConfig, B: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``B`` left-padded random captions ``[B, L, caption_dim]`` of different lengths, and their masks."""
    g = torch.Generator().manual_seed(seed)
    L = cfg.cls_token_num
    lengths = torch.randint(max(1, L // 4), L + 1, (B,), generator=g)
    feats = torch.randn(B, L, cfg.caption_dim, generator=g)
    mask = torch.arange(L)[None, :] < lengths[:, None]
    feats, mask = left_pad_captions(feats * mask[..., None], mask)
    return feats.to(device), mask.to(device)


def run_parallel(model: VivoModel, feats: torch.Tensor, mask: torch.Tensor, sampling: T2ISampling,
                 seeds: list[int], n_speech: int) -> VivoOutput:
    return collect(generate(model, feats, mask, image_sampling=sampling, speech_sampling=SpeechSampling(),
                            seed=seeds, min_len=n_speech, max_len=n_speech, progress=False), len(seeds))


def run_sequential(model: VivoModel, feats: torch.Tensor, mask: torch.Tensor, sampling: T2ISampling,
                   seeds: list[int], n_speech: int, sync: Callable[[], None]) -> tuple[VivoOutput, float]:
    """The image with ``generate_images`` (adapter skipped), then the speech alone -> (both, image seconds)."""
    start = time.perf_counter()
    with lora_rows(model.backbone, 0.0):
        codes = generate_images(model.backbone, feats, mask, cfg_scale=sampling.cfg_scale, top_k=sampling.top_k,
                                top_p=sampling.top_p, temperature=sampling.temperature, seed=seeds,
                                cfg_rows=sampling.cfg_rows, progress=False)
    sync()
    image_s = time.perf_counter() - start
    out = collect(generate(model, feats, mask, image=False, speech_sampling=SpeechSampling(), seed=seeds,
                           min_len=n_speech, max_len=n_speech, progress=False), len(seeds))
    out.image_codes = codes
    return out, image_s


def bench_case(name: str, model: VivoModel, B: int, n_speech: int, reps: int, seed: int,
               device: torch.device) -> dict:
    cfg = model.backbone.cfg
    feats, mask = captions(cfg, B, seed + 1, device)
    seeds = [seed + 100 + b for b in range(B)]
    sampling = T2ISampling()  # LlamaGen's defaults: cfg 7.5, top-k 1000

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed_parallel() -> tuple[VivoOutput, float]:
        start = time.perf_counter()
        out = run_parallel(model, feats, mask, sampling, seeds, n_speech)
        sync()
        return out, time.perf_counter() - start

    def timed_sequential() -> tuple[VivoOutput, float, float]:
        start = time.perf_counter()
        out, image_s = run_sequential(model, feats, mask, sampling, seeds, n_speech, sync)
        sync()
        return out, time.perf_counter() - start, image_s

    timed_parallel()  # warm-ups: caches, RoPE tables, allocators
    timed_sequential()
    par_s, seq_s, img_s = [], [], []
    for rep in range(reps):  # alternate which arm goes first, so both see the same machine load
        if rep % 2 == 0:
            par, t_par = timed_parallel()
            seq, t_seq, t_img = timed_sequential()
        else:
            seq, t_seq, t_img = timed_sequential()
            par, t_par = timed_parallel()
        par_s.append(t_par)
        seq_s.append(t_seq)
        img_s.append(t_img)
    best_par, best_seq = min(par_s), min(seq_s)
    row = {
        "size": name, "backbone_M": round(sum(p.numel() for p in model.backbone.parameters()
                                              if not p.requires_grad) / 1e6, 2),
        "speech_path_M": round(sum(p.numel() for p in model.trainable_parameters()) / 1e6, 2),
        "n_layer": cfg.n_layer, "dim": cfg.dim, "branch_layers": model.cfg.branch_layers,
        "batch": B, "image_tokens": cfg.block_size, "speech_tokens": n_speech,
        "guided_cfg_rows": sampling.guided, "reps": reps,
        "parallel_s": best_par, "sequential_s": best_seq, "ratio": best_seq / best_par,
        "sequential_image_s": min(img_s), "sequential_speech_s": min(s - i for s, i in zip(seq_s, img_s)),
        "parallel_s_median": statistics.median(par_s), "sequential_s_median": statistics.median(seq_s),
        "ratio_median": statistics.median(seq_s) / statistics.median(par_s),
        "parallel_s_all": par_s, "sequential_s_all": seq_s,
        "image_codes_equal": bool(torch.equal(par.image_codes.cpu(), seq.image_codes.cpu())),
        "speech_codes_equal": all(torch.equal(a, b) for a, b in zip(par.speech_codes, seq.speech_codes)),
        "speech_lengths_ok": all(len(c) == n_speech for c in par.speech_codes + seq.speech_codes),
    }
    return row


COLUMNS = [("size", "size"), ("backbone_M", "backbone M"), ("speech_path_M", "speech M"), ("batch", "B"),
           ("image_tokens", "img tok"), ("speech_tokens", "sp tok"), ("parallel_s", "parallel s"),
           ("sequential_s", "sequential s"), ("sequential_image_s", "(image s"),
           ("sequential_speech_s", "+ speech s)"), ("ratio", "ratio seq/par"),
           ("ratio_median", "(medians)"), ("image_codes_equal", "images equal"),
           ("speech_codes_equal", "speech equal")]


def print_table(rows: list[dict], header: str) -> None:
    print(header)
    cells = [[_fmt(r[c]) for c, _ in COLUMNS] for r in rows]
    widths = [max(len(s), *(len(c[i]) for c in cells)) for i, (_, s) in enumerate(COLUMNS)]
    print("  ".join(s.rjust(w) for (_, s), w in zip(COLUMNS, widths)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))


def _fmt(v: object) -> str:
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.3f}" if v < 10 else f"{v:.2f}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="toy,gpt-b-64", help=f"comma-separated, of {', '.join(SIZES)}")
    ap.add_argument("--batches", default="1,4", help="comma-separated batch sizes (default 1,4)")
    ap.add_argument("--speech-tokens", type=int, default=None,
                    help="speech codes per prompt, both arms (default: the size's image tokens, block_size)")
    ap.add_argument("--reps", type=int, default=1, help="timed runs of each arm after one warm-up (default 1)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    names = args.sizes.split(",")
    unknown = [n for n in names if n not in SIZES]
    if unknown:
        ap.error(f"unknown size(s) {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    if args.reps < 1 or args.threads < 1 or (args.speech_tokens is not None and args.speech_tokens < 1):
        ap.error("--reps, --threads and --speech-tokens must be >= 1")
    batches = [int(b) for b in args.batches.split(",")]
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
            "device_type": device.type, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": sys.version.split()[0], "cpu_count": os.cpu_count(), "dtype": "float32",
            "weights": "random (timing only)"}
    rows = []
    for name in names:
        size = SIZES[name]
        block = T2IConfig.preset(size.preset, **size.overrides).block_size
        n_speech = args.speech_tokens or block
        model = build_model(size, n_speech, device, args.seed)
        for B in batches:
            rows.append(bench_case(name, model, B, n_speech, args.reps, args.seed, device))
            r = rows[-1]
            print(f"  done {name} B={B}: parallel {r['parallel_s']:.2f} s, sequential {r['sequential_s']:.2f} s",
                  file=sys.stderr, flush=True)
        del model
    header = (f"device: {info['device']} ({device.type}), {info['threads']} thread(s); torch {info['torch']}; fp32; "
              f"RANDOM weights (timing only); image CFG 7.5 top-k 1000 (2B image rows), speech RAS, "
              f"min_len = max_len; best of {args.reps} run(s) per arm after one warm-up")
    print_table(rows, header)
    if args.json:
        args.json.write_text(json.dumps({"device": info, "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": rows}, indent=2) + "\n")
    return 0 if all(r["image_codes_equal"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
