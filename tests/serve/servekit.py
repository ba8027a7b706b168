"""Helpers of the serving tests: a real uvicorn server in a background thread, SSE parsing, media encoding.

``live_server(app)`` runs ``app`` on 127.0.0.1 with a free port (port 0) in a daemon thread and yields its base
URL; leaving the block shuts the server down (running the app's shutdown, which stops its batching engine).
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import uvicorn
from fastapi import FastAPI
from PIL import Image

DEMO = Path(__file__).resolve().parents[2] / "src" / "aromni" / "toyworld" / "assets" / "demo_inputs"
QUESTION_WAV, PICTURE_PNG = DEMO / "question.wav", DEMO / "image.png"


@contextmanager
def live_server(app: FastAPI, timeout_s: float = 30.0) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1:<free port>; yields ``http://127.0.0.1:PORT``."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)


def sse_payloads(text: str) -> list[dict | str]:
    """The ``data:`` payloads of an event stream: JSON objects, or the raw string (``[DONE]``)."""
    out: list[dict | str] = []
    for frame in text.split("\n\n"):
        if frame.startswith("data: "):
            data = frame[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def pcm_from_b64(data: str) -> np.ndarray:
    """Base64 int16 little-endian PCM -> int16 samples."""
    return np.frombuffer(base64.b64decode(data), dtype="<i2")


def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    """A 16-bit WAV file's bytes -> (int16 samples, rate)."""
    samples, rate = sf.read(io.BytesIO(data), dtype="int16")
    return samples, rate


def as_int16(audio) -> np.ndarray:
    """A float waveform (torch or numpy) -> int16 the way the server (and save_wav) writes it."""
    x = audio.detach().float().cpu().numpy() if hasattr(audio, "detach") else np.asarray(audio, np.float32)
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def png_image(b64: str) -> Image.Image:
    """Base64 PNG (or a PNG data URL) -> a PIL image (asserting it is a PNG)."""
    data = base64.b64decode(re.sub(r"^data:image/png;base64,", "", b64))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data))


def data_url(path: Path, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def file_b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        base, _, rest = key.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if base == name and got == want:
            return float(value)
    return 0.0


def error_of(response) -> dict:
    """The OpenAI error object of a response, checking its shape (and that no traceback leaks)."""
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert {"message", "type", "param", "code", "hint"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"] and "Traceback" not in response.text
    return err
