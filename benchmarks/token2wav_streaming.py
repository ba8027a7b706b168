"""CosyVoice2-style streaming token2wav vs offline synthesis, on a packed speech stack (``aromni cosyvoice pack``).

For each held-out clip: audio -> FSQ tokens -> (a) offline synthesis, one flow + HiFT call over all tokens;
(b) the streaming decoder, tokens pushed one at a time as an autoregressive model would emit them. Reported:

* the streaming error against offline synthesis: max |diff|, the SNR of the stream taking offline as the signal
  (dB), and the log-mel L1 between the two (Matcha 80-bin mel; 0 means identical spectra);
* first-audio latency: compute time from the push of the token that completes the first chunk (25 + 3 look-ahead
  tokens) to the return of its audio, i.e. the latency the stack adds once the tokens exist;
* real-time factor of each mode (synthesis seconds / audio seconds).

The baseline is the offline synthesis of the same tokens in the same run. Nothing is timed in the tests.

    .venv/bin/python benchmarks/token2wav_streaming.py --stack runs/cosyvoice/stack --world runs/toy2/world --clips 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name

from aromni.cosyvoice.data import load_clip, read_manifest
from aromni.cosyvoice.mel import matcha_mel
from aromni.tokenizers.base import load_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", required=True, help="packed speech stack directory (aromni cosyvoice pack)")
    ap.add_argument("--world", required=True, help="toy world (or speech.jsonl) holding the clips")
    ap.add_argument("--split", default="test")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--min-seconds", type=float, default=2.5, help="clips shorter than this are skipped (one chunk)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = load_tokenizer(args.stack)
    clips = [c for c in read_manifest(args.world, args.split, max_seconds=8.0)
             if (c.duration_s or 0) >= args.min_seconds][: args.clips]
    rows = []
    for clip in clips:
        codes = tok.encode(load_clip(clip, tok.sample_rate)[None])
        t0 = time.perf_counter()
        offline = tok.decode(codes)
        t_off = time.perf_counter() - t0
        chunks, first, t_stream = [], None, 0.0
        with tok.streaming(1) as dec:
            for i in range(codes.shape[1]):
                t0 = time.perf_counter()
                out = dec.push(codes[:, i:i + 1])
                dt = time.perf_counter() - t0
                t_stream += dt
                if out.shape[1] and first is None:
                    first = dt
                chunks.append(out)
            t0 = time.perf_counter()
            chunks.append(dec.flush())
            t_stream += time.perf_counter() - t0
        stream = torch.cat(chunks, dim=1)
        diff = stream - offline
        snr = 10 * torch.log10(offline.pow(2).sum() / diff.pow(2).sum().clamp(min=1e-12)).item()
        mel_l1 = (matcha_mel(stream) - matcha_mel(offline)).abs().mean().item()
        seconds = offline.shape[1] / tok.sample_rate
        rows.append({"clip": str(clip.path.name), "tokens": int(codes.shape[1]), "audio_s": round(seconds, 3),
                     "max_abs_diff": round(diff.abs().max().item(), 5), "snr_db": round(snr, 2),
                     "mel_l1": round(mel_l1, 4), "first_audio_s": None if first is None else round(first, 3),
                     "rtf_offline": round(t_off / seconds, 3), "rtf_stream": round(t_stream / seconds, 3)})
        print(json.dumps(rows[-1]), file=sys.stderr)

    def med(key: str) -> float | None:
        vals = [r[key] for r in rows if r[key] is not None]
        return round(statistics.median(vals), 4) if vals else None

    summary = {"device": f"CPU ({cpu_name()}), {args.threads} threads", "torch": torch.__version__,
               "stack": args.stack, "clips": len(rows),
               **{f"median_{k}": med(k) for k in ("snr_db", "mel_l1", "max_abs_diff", "first_audio_s",
                                                  "rtf_offline", "rtf_stream")},
               "rows": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
