"""How far chunked (streaming) WavTokenizer decoding is from offline decoding, and what a chunk costs.

WavTokenizer's decoder has a global receptive field, so ``WavTokenizer.stream_decoder`` only approximates
``decode``. For several (chunk, left context, lookahead, crossfade) settings this script streams the codes of a
few real utterances one frame at a time and reports, against the offline decode of the same codes (the
baseline, run in the same process):

* SNR (dB) over the whole output, and "seam SNR" over the samples within one frame of a chunk boundary;
* mel-L1: mean |log-mel difference|, 100 HTK bins, n_fft 1024, hop 256, natural log, floor 1e-7 (WavTokenizer's
  training mel);
* algorithmic latency (chunk + lookahead frames, in ms of audio) and the wall time of each push that emitted a
  chunk (decode of left + chunk + lookahead frames, plus the crossfade), median and max.

Official weights are not available here, so the full-size 40 Hz architecture runs with RANDOM weights: backbone
and head initialised like the official training at step 0 (truncated normal, std 0.02, zero bias), a random
encoder, and a codebook drawn from that encoder's frames of the speech (the official codebook is k-means
initialised from encoder frames), so the codes follow the speech. The error magnitudes are therefore only
indicative of a trained model; the trends (more context -> less error) are what the numbers support.

The speech is synthesised with espeak-ng and resampled to 24 kHz with soxr (``load_audio``).

    .venv/bin/python benchmarks/wavtokenizer_chunking.py                 # full grid (about 2-4 min on 1 core)
    .venv/bin/python benchmarks/wavtokenizer_chunking.py --quick         # 4 settings, 1 utterance
    .venv/bin/python benchmarks/wavtokenizer_chunking.py --json out.json --threads 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import cpu_name

from aromni.tokenizers.speech.audio_io import load_audio
from aromni.tokenizers.speech.mel import LogMel, MelConfig
from aromni.tokenizers.speech.wavtokenizer import WavTokenizer, WavTokenizerConfig

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Streaming speech synthesis needs small chunks, and small chunks need context on both sides.",
    "She sells sea shells by the sea shore, while the waves keep rolling in.",
    "Please acknowledge the user's vocal input and create a textual response.",
]

#: (chunk_frames, left_context, lookahead, crossfade samples, shape); crossfade 600 = one 40 Hz frame.
GRID = [
    (20, 0, 0, 0, "linear"),
    (20, 20, 0, 0, "linear"),
    (20, 0, 5, 0, "linear"),
    (20, 20, 5, 0, "linear"),
    (20, 20, 5, 600, "linear"),
    (20, 20, 5, 600, "equal_power"),
    (20, 40, 2, 600, "linear"),
    (20, 40, 10, 600, "linear"),
    (20, 40, 10, 1200, "linear"),
    (20, 80, 20, 600, "linear"),
    (10, 40, 10, 600, "linear"),
    (40, 40, 10, 600, "linear"),
    (40, 80, 20, 1200, "linear"),
    (20, 10**6, 10**6, 600, "linear"),  # context covers everything: must equal offline
]
QUICK = [GRID[0], GRID[4], GRID[7], GRID[-1]]


def synthesise(sentences: list[str], sample_rate: int) -> list[torch.Tensor]:
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is needed for the speech input (make apt)")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(sentences):
            path = Path(tmp) / f"u{i}.wav"
            subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
            wav = load_audio(path, sample_rate)
            wav = 0.9 * wav / wav.abs().max()
            # espeak-ng pads with digital silence; a -80 dBFS noise floor, like any recording, keeps the log-mels
            # of those stretches finite instead of pinned at the log floor.
            out.append(wav + 1e-4 * torch.randn(wav.shape, generator=torch.Generator().manual_seed(i)))
    return out


@torch.no_grad()
def random_model(wavs: list[torch.Tensor], seed: int) -> WavTokenizer:
    """Full-size 40 Hz model, random weights as at the start of official training (see module docstring)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = WavTokenizer(WavTokenizerConfig.preset("40hz"))
    for module in list(model.backbone.modules()) + list(model.head.modules()):
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Linear)):
            torch.nn.init.trunc_normal_(module.weight, std=0.02, generator=g)
            torch.nn.init.zeros_(module.bias)
    frames = torch.cat([model.encode_features(w[None])[0].T for w in wavs])  # [N, 512]
    pick = torch.randint(0, frames.shape[0], (model.codebook_size,), generator=g)
    noise = torch.randn(model.codebook_size, frames.shape[1], generator=g)
    embed = frames[pick] + 0.05 * frames.std(dim=0) * noise  # per-dimension spread across frames
    model.quantizer.embed.copy_(embed)
    model.quantizer.embed_avg.copy_(embed)
    return model.eval()


def stream_one(model: WavTokenizer, codes: torch.Tensor, setting: tuple) -> tuple[torch.Tensor, list[float]]:
    chunk, left, la, xf, shape = setting
    dec = model.stream_decoder(batch_size=1, chunk_frames=chunk, left_context=left, lookahead=la, crossfade=xf,
                               crossfade_shape=shape)
    outs, times = [], []
    for i in range(codes.shape[1]):  # one frame at a time, as a language model would emit them
        t0 = time.perf_counter()
        y = dec.push(codes[:, i: i + 1])
        if y.shape[1]:
            times.append(time.perf_counter() - t0)
        outs.append(y)
    t0 = time.perf_counter()
    outs.append(dec.flush())
    times.append(time.perf_counter() - t0)
    return torch.cat(outs, dim=1), times


def seam_mask(num_frames: int, chunk: int, hop: int) -> torch.Tensor:
    mask = torch.zeros(num_frames * hop, dtype=torch.bool)
    for b in range(chunk, num_frames, chunk):
        mask[max(0, (b - 1) * hop): (b + 1) * hop] = True
    return mask


def snr_db(err: float, sig: float) -> float:
    return float("inf") if err == 0 else 10 * torch.log10(torch.tensor(sig / err)).item()


def evaluate(model, codes_list, offline, setting, mel) -> dict:
    chunk, left, la, xf, shape = setting
    err = sig = seam_err = seam_sig = 0.0
    mel_sum, mel_n, times = 0.0, 0, []
    for codes, ref in zip(codes_list, offline):
        y, t = stream_one(model, codes, setting)
        assert y.shape == ref.shape, (y.shape, ref.shape)
        times += t
        d = (y - ref)[0].double()
        err, sig = err + d.pow(2).sum().item(), sig + ref.double().pow(2).sum().item()
        m = seam_mask(codes.shape[1], chunk, model.hop_length)
        seam_err += d[m].pow(2).sum().item()
        seam_sig += ref[0].double()[m].pow(2).sum().item()
        diff = (mel(y) - mel(ref)).abs()
        mel_sum, mel_n = mel_sum + diff.sum().item(), mel_n + diff.numel()
    return {"chunk": chunk, "left": left, "lookahead": la, "crossfade": xf, "shape": shape,
            "snr_db": snr_db(err, sig), "seam_snr_db": snr_db(seam_err, seam_sig), "mel_l1": mel_sum / mel_n,
            "latency_ms": 1000 * (chunk + la) / model.frame_rate,
            "push_ms_median": 1000 * statistics.median(times), "push_ms_max": 1000 * max(times)}


def fmt_ctx(n: int) -> str:
    return "all" if n >= 10**6 else str(n)


def report(model: WavTokenizer, wavs: list[torch.Tensor], settings: list[tuple], mel: LogMel, title: str) -> dict:
    """Offline baseline + every setting for one model; prints a markdown table and returns the rows."""
    codes_list = [model.encode(w[None]) for w in wavs]
    offline, offline_ms = [], []
    for c in codes_list:
        t0 = time.perf_counter()
        offline.append(model.decode(c))
        offline_ms.append(1000 * (time.perf_counter() - t0))
    n_frames = sum(c.shape[1] for c in codes_list)
    distinct = len(torch.unique(torch.cat([c[0] for c in codes_list])))
    print(f"## {title}")
    print(f"# input: {len(wavs)} espeak-ng utterances, {n_frames / model.frame_rate:.1f} s, {n_frames} frames, "
          f"{distinct} distinct codes; codes pushed one frame at a time")
    print(f"# baseline: offline decode of each utterance, {statistics.mean(offline_ms):.0f} ms mean "
          f"({statistics.mean(c.shape[1] for c in codes_list):.0f} frames)")
    print("| chunk | left | lookahead | crossfade | shape | SNR dB | seam SNR dB | mel-L1 | latency ms "
          "| push ms median | push ms max |")
    print("|" + "|".join("---" for _ in range(11)) + "|")
    rows = []
    for setting in settings:
        r = evaluate(model, codes_list, offline, setting, mel)
        rows.append(r)
        latency = "end" if r["lookahead"] >= 10**6 else f"{r['latency_ms']:.0f}"
        print(f"| {r['chunk']} | {fmt_ctx(r['left'])} | {fmt_ctx(r['lookahead'])} | {r['crossfade']} | "
              f"{r['shape']} | {r['snr_db']:.1f} | {r['seam_snr_db']:.1f} | {r['mel_l1']:.4f} | {latency} | "
              f"{r['push_ms_median']:.0f} | {r['push_ms_max']:.0f} |", flush=True)
    return {"title": title, "offline_ms": offline_ms, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 settings, 1 utterance")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sr = WavTokenizerConfig.preset("40hz").sample_rate
    wavs = synthesise(SENTENCES[:1] if args.quick else SENTENCES, sr)
    settings = QUICK if args.quick else GRID
    mel = LogMel(MelConfig(sample_rate=sr, n_fft=1024, hop_length=256, n_mels=100, scale="htk", norm=None,
                           log_floor=1e-7))
    print("# WavTokenizer chunked vs offline decoding, 40 Hz (hop 600, n_fft 2400)")
    print("# RANDOM WEIGHTS (official weights unavailable): error magnitudes are only indicative; the trends are")
    print("# what the numbers support. Latency = chunk + lookahead frames of audio; push ms = wall time of each")
    print("# push that emitted audio (for 'all' context: the flush that decodes every chunk).")
    print(f"# device: {cpu_name()} (CPU), torch {torch.__version__}, {args.threads} thread(s)")
    results = [report(random_model(wavs, args.seed), wavs, settings, mel,
                      "full-size 40 Hz architecture, random weights")]
    if args.json:
        args.json.write_text(json.dumps({"device": cpu_name(), "threads": args.threads, "results": results},
                                        indent=2))


if __name__ == "__main__":
    main()
