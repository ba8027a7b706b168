"""Speech codec speed on the CPU at batch 1: encode / decode real-time factor and streaming latency.

Compares our exactly-streaming codec (``tiny`` and ``toy`` presets, random weights: speed does not depend on
training) with the WavTokenizer-compatible codec (40 Hz preset, AR-Omni's architecture, random weights) when
``aromni.tokenizers.speech.wavtokenizer`` is importable. RTF = compute seconds / audio seconds (lower is faster;
1.0 = real time). Streaming: codes pushed k frames at a time; "first audio" is how many frames of codes must be
pushed before the decoder returns any sample, and the compute time of that push.

    .venv/bin/python benchmarks/codec.py [--seconds 10] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch
from _common import cpu_name


def timed(fn, repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up run."""
    out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def stream_figures(model, codes: torch.Tensor, chunk: int, repeats: int, **options) -> dict[str, float]:
    """Per-push latency for chunks of ``chunk`` frames; frames and ms until the first audio; max |stream - full|."""
    full = model.decode(codes)
    per_push, first_frames, first_ms, max_diff = [], None, [], 0.0
    for _ in range(repeats):
        dec = model.stream_decoder(1, **options)
        outs, pushed, seen_audio = [], 0, False
        for c in codes.split(chunk, dim=1):
            t = time.perf_counter()
            out = dec.push(c)
            dt = time.perf_counter() - t
            pushed += c.shape[1]
            per_push.append(dt)
            if out.shape[-1] and not seen_audio:
                first_frames, seen_audio = pushed, True
                first_ms.append(dt * 1e3)
            outs.append(out)
        outs.append(dec.flush())
        y = torch.cat(outs, -1)
        max_diff = max(max_diff, float((y - full).abs().max()))
    return {"chunk_frames": chunk, "ms_per_push": statistics.median(per_push) * 1e3,
            "ms_per_push_p95": sorted(per_push)[int(0.95 * (len(per_push) - 1))] * 1e3,
            "first_audio_frames": first_frames,
            "first_audio_compute_ms": statistics.median(first_ms) if first_ms else None,
            "first_audio_algorithmic_ms": (first_frames or 0) * 1e3 / model.frame_rate,
            "max_abs_diff_vs_full": max_diff}


def bench_model(name: str, model, seconds: float, repeats: int, chunks: list[int], **stream_options) -> dict:
    model.eval()
    wav = torch.randn(1, int(seconds * model.sample_rate)) * 0.1
    with torch.no_grad():
        t_enc, codes = timed(lambda: model.encode(wav), repeats)
        t_dec, _ = timed(lambda: model.decode(codes), repeats)
        streams = [stream_figures(model, codes, k, repeats, **stream_options) for k in chunks]
    return {"model": name, "parameters": sum(p.numel() for p in model.parameters()),
            "sample_rate": model.sample_rate, "frame_rate": model.frame_rate, "audio_seconds": seconds,
            "encode_rtf": t_enc / seconds, "decode_rtf": t_dec / seconds, "total_rtf": (t_enc + t_dec) / seconds,
            "stream_exact": bool(getattr(model.stream_decoder(1, **stream_options), "exact", False)),
            "streams": streams}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="audio length per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--configs", default="tiny,toy", help="our codec presets")
    ap.add_argument("--chunks", default="1,2,4,8", help="streaming chunk sizes in frames")
    ap.add_argument("--model", action="append", default=[], help="also measure this tokenizer directory (repeatable)")
    ap.add_argument("--no-wavtokenizer", action="store_true", help="skip the WavTokenizer baseline")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    chunks = [int(c) for c in args.chunks.split(",")]
    from aromni.tokenizers.speech.codec import CodecConfig, StreamingCodec

    results, notes = [], []
    for preset in filter(None, args.configs.split(",")):
        results.append(bench_model(f"aromni_codec/{preset}", StreamingCodec(CodecConfig.preset(preset)),
                                   args.seconds, args.repeats, chunks))
    for path in args.model:
        from aromni.tokenizers.base import load_tokenizer

        results.append(bench_model(f"{path}", load_tokenizer(path), args.seconds, args.repeats, chunks))
    if args.no_wavtokenizer:
        notes.append("WavTokenizer baseline skipped (--no-wavtokenizer)")
    else:
        try:
            from aromni.tokenizers.speech.wavtokenizer import WavTokenizer, WavTokenizerConfig
        except ImportError as e:
            notes.append(f"WavTokenizer baseline skipped: aromni.tokenizers.speech.wavtokenizer not importable ({e})")
        else:
            wt = WavTokenizer(WavTokenizerConfig.preset("40hz"))
            results.append(bench_model("wavtokenizer/40hz (chunked, approximate)", wt, args.seconds, args.repeats,
                                       chunks))
    report = {"device": f"CPU {cpu_name()}", "torch": torch.__version__, "threads": torch.get_num_threads(),
              "results": results, "notes": notes}
    print_table(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)


def print_table(report: dict) -> None:
    print(f"device: {report['device']} | torch {report['torch']} | {report['threads']} thread(s) | batch 1")
    print(f"{'model':44} {'params':>10} {'enc RTF':>8} {'dec RTF':>8} {'enc+dec':>8} {'exact':>6}")
    for r in report["results"]:
        print(f"{r['model']:44} {r['parameters']:>10,} {r['encode_rtf']:>8.4f} {r['decode_rtf']:>8.4f} "
              f"{r['total_rtf']:>8.4f} {r['stream_exact']!s:>6}")
    print(f"\n{'model':44} {'k':>3} {'ms/push':>8} {'p95':>7} {'1st audio':>10} {'1st ms':>7} {'algo ms':>8} "
          f"{'max|diff|':>10}")
    for r in report["results"]:
        for s in r["streams"]:
            print(f"{r['model']:44} {s['chunk_frames']:>3} {s['ms_per_push']:>8.2f} {s['ms_per_push_p95']:>7.2f} "
                  f"{str(s['first_audio_frames']) + ' fr':>10} {s['first_audio_compute_ms'] or 0:>7.2f} "
                  f"{s['first_audio_algorithmic_ms']:>8.0f} {s['max_abs_diff_vs_full']:>10.2e}")
    for n in report["notes"]:
        print(f"note: {n}")


if __name__ == "__main__":
    main()
