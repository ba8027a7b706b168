"""Load test of ``aromni serve``: concurrent streaming TTS clients against a local server, with and without
continuous batching, and a run where a quarter of the clients hang up mid-stream.

    python benchmarks/serve_load.py                       # 32 clients x 60 s per phase on the toy bundle
    python benchmarks/serve_load.py --clients 8 --seconds 10 --json out.json

Three phases, each against a fresh server started as a subprocess on 127.0.0.1 (loopback only):

1. ``batched``: the server batches up to ``--rows`` requests per decode step.
2. ``disconnect``: the same server; ``--disconnect-frac`` of the clients close the connection after their first
   audio chunk. Afterwards ``/metrics`` must show those requests cancelled, their rows freed and no row busy,
   and every other request complete.
3. ``serial``: a server that decodes one request at a time in a one-row cache (``--max-batch 1 --max-active 1``,
   the same code path): the baseline.

Per phase: requests completed / failed / lost (a stream that ended without its ``speech.audio.done`` event and was
not hung up on purpose), p50/p95 first-audio latency (request sent -> first audio delta received), p50/p95 RTF
(request sent -> done, over the audio's duration), tokens/s (the server's ``aromni_tokens_total`` over the
phase) and audio seconds per second. Bounded: every client stops starting requests after ``--seconds`` and every
request has ``--request-timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SENTENCES = [
    "the big red circle is on the left", "a small blue square at the top", "the green star is small",
    "what colour is the triangle", "there is a yellow circle in the middle", "the purple square is big",
    "say hello to the orange star", "a tiny pink triangle at the bottom",
]


@dataclass
class Phase:
    name: str
    clients: int
    seconds: float
    completed: int = 0
    failed: int = 0
    lost: int = 0
    hung_up: int = 0
    first_audio: list[float] = field(default_factory=list)
    rtf: list[float] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall: float = 0.0
    tokens: float = 0.0
    errors: list[str] = field(default_factory=list)
    metrics_after: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        def pct(xs: list[float], q: float) -> float | None:
            return None if not xs else statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if len(xs) > 1 \
                else xs[0]
        return {"phase": self.name, "clients": self.clients, "seconds": self.seconds,
                "completed": self.completed, "failed": self.failed, "lost": self.lost, "hung_up": self.hung_up,
                "first_audio_p50_s": pct(self.first_audio, 50), "first_audio_p95_s": pct(self.first_audio, 95),
                "rtf_p50": pct(self.rtf, 50), "rtf_p95": pct(self.rtf, 95),
                "tokens_per_s": self.tokens / self.wall if self.wall else None,
                "audio_s_per_s": self.audio_seconds / self.wall if self.wall else None,
                "errors": self.errors[:5]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(client: httpx.Client, base: str) -> dict[str, float]:
    """Unlabelled and summed-over-labels values of the server's Prometheus metrics."""
    out: dict[str, float] = {}
    for line in client.get(f"{base}/metrics").text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfa]+)$", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


class Server:
    """``aromni serve`` in a subprocess on a free loopback port."""

    def __init__(self, args: argparse.Namespace, extra: list[str]):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "aromni", "serve", "--model", args.model, "--host", "127.0.0.1",
               "--port", str(self.port), "--max-batch", str(args.rows), "--max-concurrent", str(2 * args.clients),
               "--device", args.device, *(["--dtype", args.dtype] if args.dtype else []), *extra]
        self.log = open(Path(args.log_dir) / f"server_{self.port}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        with httpx.Client() as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SystemExit(f"the server exited with {self.proc.returncode}; see {self.log.name}")
                try:
                    if c.get(f"{self.base}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise SystemExit(f"the server did not come up in 120 s; see {self.log.name}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def one_request(http: httpx.AsyncClient, base: str, text: str, phase: Phase, hang_up: bool,
                      timeout: float) -> None:
    body = {"model": "aromni", "input": text, "response_format": "pcm", "stream": True}
    t0 = time.perf_counter()
    first, samples, done, sr = None, 0, False, 0
    try:
        async with http.stream("POST", f"{base}/v1/audio/speech", json=body, timeout=timeout) as r:
            if r.status_code != 200:
                phase.failed += 1
                phase.errors.append(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
                return
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                ev = json.loads(data)
                if ev.get("type") == "speech.audio.delta":
                    samples += len(base64.b64decode(ev["audio"])) // 2
                    sr = int(ev.get("sample_rate") or sr)
                    if first is None:
                        first = time.perf_counter() - t0
                        if hang_up:
                            phase.hung_up += 1
                            return  # leaving the block closes the connection mid-stream
                elif ev.get("type") == "speech.audio.done":
                    done = True
                elif ev.get("type") == "error" or "error" in ev:
                    phase.failed += 1
                    phase.errors.append(str(ev)[:200])
                    return
    except (httpx.HTTPError, asyncio.TimeoutError) as e:
        phase.failed += 1
        phase.errors.append(f"{type(e).__name__}: {e}"[:200])
        return
    total = time.perf_counter() - t0
    if not done or not samples:
        phase.lost += 1
        return
    phase.completed += 1
    phase.first_audio.append(first if first is not None else total)
    seconds = samples / sr
    phase.audio_seconds += seconds
    phase.rtf.append(total / seconds)


async def run_phase(base: str, phase: Phase, hang_up_frac: float, timeout: float, seed: int) -> None:
    rng = random.Random(seed)
    n_hang = round(phase.clients * hang_up_frac)
    end = time.perf_counter() + phase.seconds
    limits = httpx.Limits(max_connections=phase.clients + 4, max_keepalive_connections=phase.clients + 4)

    async def client(i: int) -> None:
        async with httpx.AsyncClient(limits=limits) as http:
            while time.perf_counter() < end:
                await one_request(http, base, rng.choice(SENTENCES), phase, i < n_hang, timeout)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(phase.clients)))
    phase.wall = time.perf_counter() - t0


def measure(args: argparse.Namespace, name: str, extra: list[str], hang_up_frac: float = 0.0) -> Phase:
    server = Server(args, extra)
    try:
        with httpx.Client() as c:
            # One request first, so model warm-up (first-call allocations) is not billed to the phase.
            c.post(f"{server.base}/v1/audio/speech", json={"model": "aromni", "input": SENTENCES[0]}, timeout=120)
            before = scrape(c, server.base)
            phase = Phase(name, args.clients, args.seconds)
            asyncio.run(run_phase(server.base, phase, hang_up_frac, args.request_timeout, args.seed))
            # Rows of hung-up requests are freed at the next step boundary: give the server a moment to get there.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                after = scrape(c, server.base)
                if after.get("aromni_batch_rows_busy", 0) == 0:
                    break
                time.sleep(0.1)
            phase.tokens = after.get("aromni_tokens_total", 0) - before.get("aromni_tokens_total", 0)
            keys = ("aromni_requests_cancelled_total", "aromni_rows_freed_cancelled_total")
            phase.metrics_after = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
            phase.metrics_after["aromni_batch_rows_busy"] = after.get("aromni_batch_rows_busy", 0)
            return phase
    finally:
        server.stop()


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch  # the benchmark's own process only asks the name

        return torch.cuda.get_device_name(0)
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    return f"CPU: {model}, {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toy")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", help="server weights dtype (float32 is fastest on CPU)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60.0, help="per phase")
    ap.add_argument("--rows", type=int, default=32, help="the batching server's cache rows")
    ap.add_argument("--disconnect-frac", type=float, default=0.25)
    ap.add_argument("--request-timeout", type=float, default=600.0)
    ap.add_argument("--skip-serial", action="store_true")
    ap.add_argument("--server-arg", action="append", default=[], metavar="FLAG",
                    help="extra `aromni serve` flag for the batching phases (repeatable), e.g. "
                         "--server-arg=--no-batch-invariant")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--log-dir", default="/tmp")
    args = ap.parse_args()
    if args.clients < 1 or args.seconds <= 0 or not 0 <= args.disconnect_frac <= 1:
        ap.error("--clients >= 1, --seconds > 0 and 0 <= --disconnect-frac <= 1")

    phases = [measure(args, "batched", args.server_arg)]
    phases.append(measure(args, "disconnect", args.server_arg, args.disconnect_frac))
    if not args.skip_serial:
        phases.append(measure(args, "serial", ["--max-batch", "1", "--max-active", "1"]))
    rows = [p.summary() for p in phases]
    result: dict[str, object] = {"device": device_name(args.device), "model": args.model, "dtype": args.dtype,
                                 "rows": args.rows, "server_args": args.server_arg, "phases": rows,
                                 "disconnect_metrics": phases[1].metrics_after}
    if not args.skip_serial and rows[2]["tokens_per_s"]:
        result["batching_throughput_ratio"] = rows[0]["tokens_per_s"] / rows[2]["tokens_per_s"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    cols = ["phase", "clients", "completed", "failed", "lost", "hung_up", "first_audio_p50_s", "first_audio_p95_s",
            "rtf_p50", "rtf_p95", "tokens_per_s", "audio_s_per_s"]
    print(f"device: {result['device']}  model: {args.model} ({args.dtype})  batch rows: {args.rows}  "
          f"server flags: {' '.join(args.server_arg) or '-'}")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
    print(f"disconnect phase, from /metrics: {phases[1].metrics_after}")
    if "batching_throughput_ratio" in result:
        print(f"throughput, continuous batching vs one request at a time: {result['batching_throughput_ratio']:.2f}x")
    for p in phases:
        for e in p.errors[:3]:
            print(f"{p.name} error: {e}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    bad = [r["phase"] for r in rows if r["failed"] or r["lost"]]
    if bad:
        raise SystemExit(f"errors or lost requests in: {', '.join(bad)}")


if __name__ == "__main__":
    main()
