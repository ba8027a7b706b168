"""Small requests that would cost the server a lot, and an engine that fails: many-channel audio, many images,
an idle WebSocket, a request whose prefill fails, a worker that cannot start."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from servekit import PICTURE_PNG, data_url, error_of

from aromni.serve.app import create_app
from aromni.serve.batching import BatchingEngine, RequestCancelled
from aromni.serve.settings import ServeSettings
from aromni.vocab.tasks import TTS
from aromni.vocab.templates import task_conversation


@pytest.fixture(scope="module")
def client(toy_model):
    settings = ServeSettings(api_key=None, max_rows=3, max_images=2, request_timeout_s=1.0)
    with TestClient(create_app(toy_model, settings)) as c:
        yield c


def test_audio_with_too_many_channels_is_refused_before_decoding(client):
    buf = io.BytesIO()
    sf.write(buf, np.zeros((1600, 9), dtype=np.float32), 16000, format="WAV")
    err = error_of(client.post("/v1/audio/transcriptions", files={"file": ("x.wav", buf.getvalue())}))
    assert "9 channels" in err["message"] and "mono or stereo" in err["hint"]


def test_too_many_images_are_refused_before_decoding(client):
    image = {"type": "image_url", "image_url": {"url": data_url(PICTURE_PNG)}}
    user = {"role": "user", "content": [{"type": "text", "text": "look"}, image, image, image]}
    r = client.post("/v1/chat/completions", json={"messages": [user]})
    err = error_of(r)
    assert r.status_code == 400 and "3 images" in err["message"] and "max_images" in err["message"]


def test_an_idle_websocket_is_closed_with_an_error(client):
    with client.websocket_connect("/v1/audio/speech/stream") as ws:
        message = ws.receive_json()
    assert message["type"] == "error" and message["error"]["code"] == "idle_timeout"


def test_a_failing_prefill_fails_only_its_request(toy_model):
    engine = BatchingEngine(toy_model.engine.decoder, toy_model.layout, image_tokens=toy_model.engine.image_tokens,
                            max_rows=4)
    opts = toy_model.options(TTS).updated(max_new_tokens=30)
    good, bad = (toy_model.encode(task_conversation(TTS, style=toy_model.style.name, text=t))
                 for t in ("the green star is small", "a red circle"))
    real = engine._prefill

    def prefill(row, ids):
        if ids == bad:
            raise MemoryError("simulated: no memory for this prompt")
        return real(row, ids)

    engine._prefill = prefill
    try:
        want = engine.run([good], opts)[0].tokens
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("good", engine.run([good], opts)[0].tokens))
        t.start()
        with pytest.raises(MemoryError):
            engine.run([bad], opts)
        t.join()
        assert out["good"] == want
        s = engine.stats()
        assert (s.failed, s.rows_busy) == (1, 0)
    finally:
        engine.close()


def test_a_worker_that_cannot_start_releases_its_requests(toy_model, monkeypatch):
    engine = BatchingEngine(toy_model.engine.decoder, toy_model.layout, image_tokens=toy_model.engine.image_tokens,
                            max_rows=2)

    def no_memory(*args, **kwargs):
        raise MemoryError("simulated: the cache does not fit")

    monkeypatch.setattr(engine.decoder, "setup_caches", no_memory)
    p = toy_model.encode(task_conversation(TTS, style=toy_model.style.name, text="the green star is small"))
    with pytest.raises(RequestCancelled):
        engine.run([p], toy_model.options(TTS))
    with pytest.raises(RequestCancelled, match="shut down"):  # later requests fail at once, not hang
        engine.run([p], toy_model.options(TTS))
    engine.close()
