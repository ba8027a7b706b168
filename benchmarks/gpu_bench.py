"""Prepared GPU benchmark: a 7B-config decoder with random weights in bf16 on one GPU (run by ``gpu.sh``).

    bash benchmarks/gpu.sh                       # on a GPU machine: JSON + table in gpu_out/ (aim: under 8 min)
    .venv/bin/python benchmarks/gpu_bench.py --dry-run   # the same code paths, tiny config on CPU (seconds)

Parts (each with its peak GPU memory):

* **bandwidth**: a device-to-device copy of 1 GiB (``2 x bytes / time``: the HBM bandwidth) and the decode limit
  it implies, ``bandwidth / weight bytes`` steps per second;
* **decode**: greedy tokens/s at each batch for our eager step, the compiled static step (CUDA graphs through
  ``reduce-overhead``) and weight-only int8, eager and compiled, against transformers' Chameleon ``generate()``
  on the same weights (``--no-hf`` skips it: writing and loading a 7B checkpoint takes a minute or two);
* **tts**: first speech token latency (prompt ending in ``<boa>``, speech codes only) and the decode rate as a
  real-time factor at the codec's 40 frames per second;
* **t2i**: seconds per image of ``--image-tokens`` codes with the official three-row CFG;
* **train**: the training step with FSDP2 (``fully_shard`` per block, then the root, in a one-process group),
  bf16 autocast over float32 master weights, activation checkpointing, the fused LM-head loss and AdamW, eager and
  with ``model.compile`` (each block and the loss chunks through ``torch.compile``): tokens/s, peak memory and MFU.
  The model keeps the 7B's block shape but only ``--train-layers`` of its 32 blocks (default 8, 2.2 B parameters):
  the full 7B with float32 AdamW state (16 bytes a parameter) does not fit one 80 GB GPU, and MFU is a property of
  the block. MFU = model FLOPs per token (6 x the matmul parameters + 6 x layers x seq x dim for causal
  attention) x tokens/s over the GPU's peak: the nominal dense bf16 peak for known GPUs, and always the bf16
  matmul rate measured in the same run.

Not measured here: first *audio* (it needs a trained codec's decoder).
"""

from __future__ import annotations

import argparse
import functools
import json
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from decode import hf_generate, ours_generate, variant_of
from torch.distributed.fsdp import fully_shard

from aromni.inference.cfg import generate_image_cfg
from aromni.inference.engine import Engine
from aromni.inference.options import DecodeOptions, ImageSampling, TextSampling
from aromni.models import Decoder, DecoderConfig
from aromni.models.checkpoint import save_checkpoint
from aromni.training.losses import StepTotals, TrainingObjective
from aromni.utils.io import atomic_write_json
from aromni.vocab.layout import VocabLayout

CODEC_FPS = 40.0  # speech codes per second of audio (WavTokenizer 40 Hz, the official AR-Omni codec)
#: Our decode variants on the GPU. Weight-only int8 dequantizes per call off the CPU, so only compiled (where
#: inductor fuses the dequantization into the product, as in gpt-fast) can be fast; eager int8 shows the cost.
GPU_VARIANTS = ("eager", "compiled", "int8", "int8-compiled")
#: Nominal dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, by a substring of the device name.
NOMINAL_BF16_PEAK = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def bandwidth(device: torch.device, nbytes: int) -> float:
    """GB/s of a device-to-device copy (read + write), best of 5."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    return max(2 * nbytes / timed(device, lambda: dst.copy_(src)) for _ in range(6)) / 1e9


def random_decoder(cfg: DecoderConfig, device: torch.device, dtype: torch.dtype) -> Decoder:
    with torch.device(device):
        model = Decoder(cfg)
    model.init_weights(std=0.02)
    return model.to(dtype).eval()


def decode_part(model: Decoder, cfg: DecoderConfig, batches: list[int], n_new: int, hf: bool,
                device: torch.device, dtype: torch.dtype) -> list[dict]:
    theirs = hf_load(model, dtype, device) if hf else None
    rows = []
    for b in batches:
        prompt = torch.randint(0, cfg.vocab_size, (b, 32), device=device)
        row: dict[str, object] = {"batch": b}
        for name in GPU_VARIANTS:
            peak_reset(device)
            m, step = variant_of(model, name, device)
            ours_generate(m, prompt, n_new, step)  # warm-up / compile
            _, stamps = ours_generate(m, prompt, n_new, step)
            steps = sorted(y - x for x, y in zip(stamps[1:], stamps[2:]))
            row[f"{name}_tok_s"] = b / steps[len(steps) // 2]
            row[f"{name}_peak_gib"] = peak_gib(device)
            del m
        if theirs is not None:
            peak_reset(device)
            hf_generate(theirs, prompt, n_new)
            _, stamps = hf_generate(theirs, prompt, n_new)
            steps = sorted(y - x for x, y in zip(stamps[1:], stamps[2:]))
            row["hf_tok_s"] = b / steps[len(steps) // 2]
            row["hf_peak_gib"] = peak_gib(device)
            for name in GPU_VARIANTS:
                row[f"{name}_vs_hf"] = row[f"{name}_tok_s"] / row["hf_tok_s"]
        rows.append(row)
    return rows


def hf_load(model: Decoder, dtype: torch.dtype, device: torch.device):
    from transformers import ChameleonForConditionalGeneration

    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(model.float().cpu(), tmp, "hf", extra_config={"vocabulary_map": {}, "vq_config": {
            "embed_dim": 8, "num_embeddings": 16, "latent_channels": 32, "resolution": 32, "base_channels": 32,
            "channel_multiplier": [1], "num_res_blocks": 1, "attn_resolutions": []}})
        model.to(device=device, dtype=dtype)
        hf = ChameleonForConditionalGeneration.from_pretrained(tmp, dtype=dtype)
    return hf.to(device).eval()


def tts_part(model: Decoder, layout: VocabLayout, n_new: int, device: torch.device) -> dict:
    engine = Engine(model, layout, compile=True)
    opts = DecodeOptions(text=TextSampling(greedy=True), max_new_tokens=n_new, seed=0, allow_image=False)
    prompt = [layout.bos, *[int(t) for t in layout.text_ids[:24]], layout.boa]
    for _ in range(2):  # the first run compiles
        peak_reset(device)
        t0 = time.perf_counter()
        first, times = None, []
        for step in engine.generate([prompt], opts):
            times.append(step.time)
            if first is None and layout.speech.contains(step.tokens[0]):
                first = step.time - t0
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    per_token = gaps[len(gaps) // 2] if gaps else float("nan")
    return {"first_speech_token_s": first, "speech_tokens": len(times), "rtf": per_token * CODEC_FPS,
            "peak_gib": peak_gib(device)}


def t2i_part(model: Decoder, layout: VocabLayout, n_codes: int, device: torch.device) -> dict:
    opts = ImageSampling(greedy=False, cfg=True)
    context = [layout.bos, *[int(t) for t in layout.text_ids[:16]], layout.boi]
    gens = [torch.Generator(device=device).manual_seed(0)]
    run = lambda: list(generate_image_cfg(model, layout, [context], n_codes, opts, gens))  # noqa: E731
    run()  # warm-up
    peak_reset(device)
    return {"image_tokens": n_codes, "seconds_per_image": timed(device, run), "peak_gib": peak_gib(device)}


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """FLOP/s of an ``n x n x n`` matmul in ``dtype``, best of 5 (the measured compute limit)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    return max(2 * n**3 / timed(device, lambda: a @ b) for _ in range(5))


def _train_step(model: TrainingObjective, opt: torch.optim.Optimizer, tokens: torch.Tensor, weights: torch.Tensor,
                perc: torch.Tensor, totals: StepTotals, dtype: torch.dtype) -> None:
    """One optimizer step on ``tokens [B, T + 1]``: forward under autocast, backward, clipping, AdamW."""
    with torch.autocast(tokens.device.type, dtype=dtype):
        loss, _, _ = model(tokens[:, :-1], tokens[:, 1:], weights, perc, None, totals)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def train_part(cfg: DecoderConfig, layers: int, batch: int, seq: int, steps: int, device: torch.device,
               peak: float, nominal: float | None) -> list[dict]:
    """FSDP2 train-step throughput, eager and compiled, in a one-process group (see the module docstring)."""
    tcfg = DecoderConfig(**{**cfg.to_dict(), "n_layers": layers, "max_seq_len": seq})
    if not dist.is_initialized():
        with socket.socket() as sock:  # a free port for the one-process group
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                                rank=0, world_size=1)
    autocast_dtype = torch.bfloat16
    n_matmul = tcfg.num_params() - tcfg.vocab_size * tcfg.dim  # the embedding lookup is not a matmul
    flops_per_token = 6 * n_matmul + 6 * tcfg.n_layers * seq * tcfg.dim
    rows = []
    try:
        for mode in ("eager", "compiled"):
            torch.manual_seed(0)
            with torch.device(device):
                decoder = Decoder(tcfg)
            decoder.init_weights(std=0.02)
            decoder.gradient_checkpointing = True
            if mode == "compiled":
                for layer in decoder.layers:
                    layer.compile()
            model = TrainingObjective(decoder, compiled=mode == "compiled", chunk_size=4096)
            for layer in decoder.layers:
                fully_shard(layer)
            fully_shard(model)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            tokens = torch.randint(0, tcfg.vocab_size, (batch, seq + 1), device=device)
            weights = torch.ones(batch, seq, device=device)
            perc = torch.full((batch, seq), -1, device=device, dtype=torch.long)
            totals = StepTotals(ntp=float(batch * seq), perc=0.0)
            peak_reset(device)
            times = []
            for i in range(steps + 2):  # the first two (allocation, compilation) are not timed
                dt = timed(device, functools.partial(_train_step, model, opt, tokens, weights, perc, totals,
                                                     autocast_dtype))
                if i >= 2:
                    times.append(dt)
            t = sorted(times)[len(times) // 2]
            tok_s = batch * seq / t
            rows.append({"mode": mode, "layers": layers, "params_B": tcfg.num_params() / 1e9, "batch": batch,
                         "seq": seq, "step_s": t, "tokens_per_s": tok_s,
                         "mfu_measured_peak": flops_per_token * tok_s / peak,
                         "mfu_nominal_peak": flops_per_token * tok_s / nominal if nominal else None,
                         "peak_gib": peak_gib(device)})
            del model, decoder, opt
            if device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        dist.destroy_process_group()
    rows[1]["compiled_vs_eager"] = rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"]
    return rows


def table(result: dict) -> str:
    """The results as a few aligned lines (gpu.sh keeps them beside the JSON)."""
    f = lambda v: "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [f"device: {result['device']}, {result['dtype']}, {result['params_B']:.2f} B parameters, torch "
             f"{result['torch']}; HBM {f(result['bandwidth']['GB_s'])} GB/s, decode limit "
             f"{f(result['bandwidth']['limit_tok_s_per_row'])} tok/s per row"]
    for r in result["decode"]:
        lines.append(f"decode B={r['batch']}: " + ", ".join(
            f"{k} {f(r.get(f'{k}_tok_s'))} tok/s (x HF {f(r.get(f'{k}_vs_hf'))}, {f(r.get(f'{k}_peak_gib'))} GiB)"
            for k in GPU_VARIANTS) + f"; HF {f(r.get('hf_tok_s'))} tok/s")
    t = result["tts"]
    lines.append(f"tts: first speech token {f(t['first_speech_token_s'])} s, RTF {f(t['rtf'])}")
    lines.append(f"t2i: {f(result['t2i']['seconds_per_image'])} s per image of {result['t2i']['image_tokens']} codes "
                 "(3-row CFG)")
    for r in result.get("train", []):
        lines.append(f"train {r['mode']}: {r['layers']} blocks ({r['params_B']:.2f} B), {r['batch']} x {r['seq']}: "
                     f"{f(r['tokens_per_s'])} tok/s, MFU {f(r['mfu_measured_peak'])} of the measured "
                     f"{f(result['matmul_bf16_TFLOP_s'])} TFLOP/s (nominal: {f(r['mfu_nominal_peak'])}), "
                     f"{f(r['peak_gib'])} GiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny config on CPU: check the code paths")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--image-tokens", type=int, default=1024)
    ap.add_argument("--no-hf", action="store_true", help="skip the transformers baseline")
    ap.add_argument("--train-layers", type=int, default=8, help="blocks of the 7B config in the train part")
    ap.add_argument("--train-batch", type=int, default=2)
    ap.add_argument("--train-seq", type=int, default=4096)
    ap.add_argument("--train-steps", type=int, default=3, help="timed train steps per mode")
    ap.add_argument("--no-train", action="store_true", help="skip the train part")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.dry_run:
        device, dtype = torch.device("cpu"), torch.float32
        layout = VocabLayout.compact(200, 64, 64)
        cfg = DecoderConfig.preset("tiny", vocab_size=layout.vocab_size, max_seq_len=256)
        args.new_tokens, args.image_tokens = min(args.new_tokens, 8), min(args.image_tokens, 16)
        args.train_layers, args.train_batch, args.train_seq = 2, 2, 64
        args.train_steps = min(args.train_steps, 2)
    else:
        if not torch.cuda.is_available():
            ap.error("no CUDA device here: run with --dry-run to check the script on CPU")
        device, dtype = torch.device("cuda"), torch.bfloat16
        layout = VocabLayout.aromni_7b()
        cfg = DecoderConfig.preset("7b", max_seq_len=args.image_tokens + 256)
    model = random_decoder(cfg, device, dtype)
    result: dict[str, object] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)",
        "dtype": str(dtype), "params_B": cfg.num_params() / 1e9, "torch": torch.__version__}
    gbs = bandwidth(device, 2**30 if device.type == "cuda" else 2**24)
    weight_bytes = cfg.num_params() * torch.finfo(dtype).bits // 8
    result["bandwidth"] = {"GB_s": gbs, "limit_tok_s_per_row": gbs * 1e9 / weight_bytes}
    batches = [int(b) for b in args.batches.split(",")]

    def done(part: str) -> None:
        # Each finished part goes to the JSON at once, so a run cut short by gpu.sh's timeout keeps them.
        print(f"gpu_bench: {part} done", file=sys.stderr, flush=True)
        if args.json:
            atomic_write_json(args.json, result)

    result["decode"] = decode_part(model, cfg, batches, args.new_tokens, not args.no_hf, device, dtype)
    done("decode")
    result["tts"] = tts_part(model, layout, args.new_tokens, device)
    done("tts")
    result["t2i"] = t2i_part(model, layout, args.image_tokens, device)
    done("t2i")
    if not args.no_train:
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        peak = matmul_peak(device, torch.bfloat16, 8192 if device.type == "cuda" else 256)
        name = str(result["device"])
        nominal = next((v for k, v in NOMINAL_BF16_PEAK.items() if k in name), None)
        result["matmul_bf16_TFLOP_s"] = peak / 1e12
        result["train"] = train_part(cfg, args.train_layers, args.train_batch, args.train_seq, args.train_steps,
                                     device, peak, nominal)
        done("train")
    print(json.dumps(result, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
