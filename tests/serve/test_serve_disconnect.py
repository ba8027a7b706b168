"""A client that goes away cancels its generation: on a real uvicorn server, closing a streaming TTS or chat
response (or giving up on a non-streaming one) frees its batch rows within a step, the metrics count the
cancellation, and a request running beside it completes with the right answer.

The decoder is slowed by a forward pre-hook (a sleep per call) so that the generations are surely still running
when the client leaves, however fast the machine."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
from servekit import PICTURE_PNG, as_int16, data_url, live_server, metric, sse_payloads, wav_samples

from aromni.serve.app import create_app
from aromni.serve.settings import ServeSettings

LONG = ("a big blue star at the top right on a white background and a small red circle at the bottom left on a "
        "gray background")
STEP_DELAY_S = 0.03


@pytest.fixture(scope="module")
def reference(toy_model):
    return as_int16(toy_model.tts("a red circle", seed=0).audio)


@pytest.fixture(scope="module")
def server(toy_model):
    app = create_app(toy_model, ServeSettings(api_key=None, max_rows=4))
    decoder = app.state.aromni.engine.decoder
    hook = decoder.register_forward_pre_hook(lambda module, args: time.sleep(STEP_DELAY_S))
    try:
        with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as http:
            yield app, http
    finally:
        hook.remove()


def _counts(http: httpx.Client) -> dict[str, float]:
    text = http.get("/metrics").text
    return {k: metric(text, k) for k in ("aromni_requests_cancelled_total", "aromni_rows_freed_cancelled_total",
                                         "aromni_batch_rows_busy", "aromni_active_requests")}


def _wait_for(http: httpx.Client, before: dict[str, float], cancelled: int) -> dict[str, float]:
    deadline = time.monotonic() + 30
    while True:
        now = _counts(http)
        done = (now["aromni_requests_cancelled_total"] >= before["aromni_requests_cancelled_total"] + cancelled
                and now["aromni_batch_rows_busy"] == 0 and now["aromni_active_requests"] == 0)
        if done or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def _beside(http: httpx.Client) -> tuple[threading.Thread, list[httpx.Response]]:
    """A normal TTS request running in a thread (started now)."""
    out: list[httpx.Response] = []
    t = threading.Thread(target=lambda: out.append(http.post("/v1/audio/speech", json={"input": "a red circle",
                                                                                       "seed": 0})))
    t.start()
    return t, out


def _check_beside(t: threading.Thread, out: list[httpx.Response], reference: np.ndarray) -> None:
    t.join(60)
    assert out and out[0].status_code == 200
    samples, _ = wav_samples(out[0].content)
    assert np.array_equal(samples, reference)


@pytest.mark.parametrize("kind", ["speech", "chat"])
def test_closing_a_stream_cancels_its_generation(server, reference, kind):
    app, http = server
    before = _counts(http)
    if kind == "speech":
        path, body = "/v1/audio/speech", {"input": LONG, "stream": True}
    else:  # a spoken answer: about a hundred tokens
        path = "/v1/chat/completions"
        user = {"role": "user", "content": [{"type": "text", "text": "what color is it"},
                                            {"type": "image_url", "image_url": {"url": data_url(PICTURE_PNG)}}]}
        body = {"messages": [{"role": "system", "content": "Reply in speech."}, user],
                "modalities": ["text", "audio"], "stream": True, "seed": 0}
    t, out = _beside(http)
    with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        seen = []
        while len(seen) < 2:
            line = next(lines)
            if line.startswith("data: "):
                seen.append(line)
    # The response is closed here, long before its generation could have ended.
    events = sse_payloads("\n\n".join(seen) + "\n\n")
    assert events and all(isinstance(e, dict) for e in events)
    after = _wait_for(http, before, cancelled=1)
    assert after["aromni_requests_cancelled_total"] == before["aromni_requests_cancelled_total"] + 1
    assert after["aromni_rows_freed_cancelled_total"] >= before["aromni_rows_freed_cancelled_total"] + 1
    assert after["aromni_batch_rows_busy"] == 0 and app.state.aromni.engine.stats().rows_busy == 0
    _check_beside(t, out, reference)


def test_giving_up_on_a_plain_request_cancels_it(server, reference):
    app, http = server
    before = _counts(http)
    t, out = _beside(http)
    with pytest.raises(httpx.ReadTimeout):
        http.post("/v1/audio/speech", json={"input": LONG}, timeout=httpx.Timeout(60, read=0.5))
    after = _wait_for(http, before, cancelled=1)
    assert after["aromni_requests_cancelled_total"] == before["aromni_requests_cancelled_total"] + 1
    assert after["aromni_batch_rows_busy"] == 0
    _check_beside(t, out, reference)
    text = http.get("/metrics").text
    assert metric(text, "aromni_requests_total", endpoint="/v1/audio/speech", status="499") == 1
