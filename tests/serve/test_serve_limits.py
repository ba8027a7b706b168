"""The server's limits: bodies over max_body_bytes get 413, audio/images over their limits 400 naming the limit,
requests beyond max_concurrent + max_queue 429 with Retry-After (a real uvicorn server), a request past its
timeout 504 with its generation cancelled and its rows freed; admission is first come, first served; settings
refuse an open host without a key."""

from __future__ import annotations

import threading
import time

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from servekit import (
    PICTURE_PNG,
    QUESTION_WAV,
    data_url,
    error_of,
    file_b64,
    live_server,
    metric,
)

from aromni.errors import ConfigError
from aromni.serve.api_errors import APIError
from aromni.serve.app import create_app
from aromni.serve.limits import Admission
from aromni.serve.metrics import TokenRate
from aromni.serve.settings import ServeSettings

LONG = ("a big blue star at the top right on a white background and a small red circle at the bottom left on a "
        "gray background")


@pytest.fixture(scope="module")
def tight(toy_model):
    settings = ServeSettings(api_key=None, max_rows=3, max_body_bytes=200_000, max_audio_seconds=0.5,
                             max_image_pixels=32 * 32, request_timeout_s=0.3)
    with TestClient(create_app(toy_model, settings)) as c:
        yield c


def test_bodies_over_the_limit_get_413(tight):
    big = {"input": "x" * 300_000}
    r = tight.post("/v1/audio/speech", json=big)
    assert r.status_code == 413
    err = error_of(r)
    assert "200,000 bytes" in err["message"] and "max_body_bytes" in err["message"]
    # Without a Content-Length (chunked upload) the body is counted as it arrives.
    r = tight.post("/v1/audio/speech", content=iter([b'{"input": "', b"x" * 150_000, b"x" * 150_000, b'"}']),
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and error_of(r)["code"] == "request_too_large"


def test_audio_and_images_over_their_limits_name_the_limit(tight):
    files = {"file": ("q.wav", QUESTION_WAV.read_bytes())}
    err = error_of(tight.post("/v1/audio/transcriptions", files=files))
    assert "1.4 s long" in err["message"] and "max_audio_seconds" in err["message"] and err["hint"]  # 1.36 s
    user = {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": file_b64(QUESTION_WAV)}}]}
    r = tight.post("/v1/chat/completions", json={"messages": [user]})
    assert r.status_code == 400 and "max_audio_seconds" in error_of(r)["message"]
    user = {"role": "user", "content": [{"type": "text", "text": "what is it"},
                                        {"type": "image_url", "image_url": {"url": data_url(PICTURE_PNG)}}]}
    r = tight.post("/v1/chat/completions", json={"messages": [user]})
    err = error_of(r)
    assert r.status_code == 400 and "64x64" in err["message"] and "max_image_pixels" in err["message"]
    assert "downscale" in err["hint"]


def test_a_request_past_its_timeout_gets_504_and_is_cancelled(tight):
    engine = tight.app.state.aromni.engine
    before = engine.stats().cancelled
    r = tight.post("/v1/audio/speech", json={"input": LONG})
    assert r.status_code == 504
    err = error_of(r)
    assert err["type"] == "timeout_error" and "0.3 s" in err["message"] and "request_timeout_s" in err["message"]
    deadline = time.monotonic() + 20
    while (engine.stats().cancelled == before or engine.stats().rows_busy) and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = engine.stats()
    assert stats.cancelled == before + 1 and stats.rows_busy == 0 and stats.rows_freed_cancelled >= 1


def test_beyond_concurrency_and_queue_requests_get_429(toy_model, monkeypatch):
    """One request in flight (held inside the model until the test lets it go), one queued, the third 429."""
    release, entered = threading.Event(), threading.Event()
    tts = toy_model.tts

    def held_tts(*args, **kwargs):
        entered.set()
        assert release.wait(30)
        return tts(*args, **kwargs)

    monkeypatch.setattr(toy_model, "tts", held_tts)
    settings = ServeSettings(api_key=None, max_rows=3, max_concurrent=1, max_queue=1)
    with live_server(create_app(toy_model, settings)) as url, httpx.Client(base_url=url, timeout=60) as http:
        answers: list[httpx.Response] = []
        senders = [threading.Thread(target=lambda: answers.append(
            http.post("/v1/audio/speech", json={"input": "a red circle", "seed": 0}))) for _ in range(2)]
        senders[0].start()
        assert entered.wait(30)
        senders[1].start()
        deadline = time.monotonic() + 10
        while metric(http.get("/metrics").text, "aromni_queue_depth") < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        text = http.get("/metrics").text
        assert metric(text, "aromni_queue_depth") == 1 and metric(text, "aromni_active_requests") == 1
        r = http.post("/v1/audio/speech", json={"input": "a red circle"})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        err = error_of(r)
        assert err["type"] == "rate_limit_error" and "max_concurrent" in err["message"]
        release.set()
        for t in senders:
            t.join(60)
        assert [a.status_code for a in answers] == [200, 200] and answers[0].content == answers[1].content
        text = http.get("/metrics").text
        assert metric(text, "aromni_requests_total", endpoint="/v1/audio/speech", status="429") == 1
        assert metric(text, "aromni_requests_total", endpoint="/v1/audio/speech", status="200") == 2
        assert metric(text, "aromni_active_requests") == 0 and metric(text, "aromni_queue_depth") == 0


def test_admission_is_first_come_first_served_and_passes_on_cancelled_slots():
    order: list[str] = []

    async def main() -> None:
        adm = Admission(max_concurrent=1, max_queue=2)
        first = await adm.acquire()

        async def wait(name: str, cancel_after: float | None = None) -> None:
            with anyio.move_on_after(cancel_after if cancel_after is not None else 10):
                slot = await adm.acquire()
                order.append(name)
                await anyio.sleep(0.01)
                slot.release()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, "b", 0.05)  # gives up while queued
            await anyio.sleep(0.01)
            tg.start_soon(wait, "c")
            await anyio.sleep(0.01)
            with pytest.raises(APIError) as e:
                await adm.acquire()  # 1 in flight, 2 waiting: full
            assert e.value.status == 429 and e.value.headers["Retry-After"] == "1"
            await anyio.sleep(0.1)  # b has given up; c still waits behind the first
            assert adm.waiting == 1
            first.release()
            first.release()  # idempotent
        assert adm.in_flight == 0 and adm.waiting == 0

    anyio.run(main)
    assert order == ["c"]


def test_token_rate_is_over_the_recent_window():
    rate = TokenRate(window_s=10)
    assert rate.sample(0, now=0.0) == 0.0
    assert rate.sample(50, now=5.0) == pytest.approx(10.0)  # the window shrinks to the samples' age at first
    assert rate.sample(100, now=3600.0) == pytest.approx(5.0)  # 50 tokens since the last sample before the window
    assert rate.sample(100, now=3700.0) == 0.0  # idle


def test_settings_refuse_an_open_host_without_a_key(monkeypatch):
    monkeypatch.delenv("AROMNI_API_KEY", raising=False)
    assert ServeSettings().api_key is None and ServeSettings(host="localhost").host == "localhost"
    assert ServeSettings(host="::1").host == "::1"
    with pytest.raises(ConfigError, match="--api-key"):
        ServeSettings(host="0.0.0.0")
    assert ServeSettings(host="0.0.0.0", api_key="k").api_key == "k"
    monkeypatch.setenv("AROMNI_API_KEY", "from-env")
    assert ServeSettings(host="0.0.0.0").api_key == "from-env"
    for bad in ({"port": 70000}, {"max_rows": 0}, {"max_queue": -1}, {"request_timeout_s": float("nan")},
                {"max_audio_seconds": 0}, {"cors_origins": "http://x"}, {"api_key": " "}, {"max_concurrent": True}):
        with pytest.raises(ConfigError):
            ServeSettings(**bad)
