"""The streaming-TTS WebSocket under a real uvicorn on loopback (the endpoint tests use FastAPI's test client,
which needs no WebSocket library; uvicorn needs the serve extra's ``websockets``): sentences are spoken as they
complete, with the same audio as ``model.tts`` of each sentence."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import websockets
from servekit import live_server

from aromni.serve.app import create_app
from aromni.serve.settings import ServeSettings


def test_websocket_speaks_each_sentence_under_uvicorn(toy_model):
    sentences = ["the green star is small.", "a red circle."]
    expected = [np.round(toy_model.tts(s).audio.numpy() * 32767) for s in sentences]
    with live_server(create_app(toy_model, ServeSettings(api_key="k", max_rows=4))) as url:
        async def talk() -> list[dict]:
            uri = url.replace("http://", "ws://") + "/v1/audio/speech/stream?api_key=k"
            async with websockets.connect(uri) as ws:
                for piece in ("the green star ", "is small. a red", " circle."):
                    await ws.send(json.dumps({"type": "text", "text": piece}))
                await ws.send(json.dumps({"type": "close"}))
                events = []
                async for message in ws:
                    events.append(json.loads(message))
                    if events[-1]["type"] in ("done", "error"):
                        return events
            return events

        events = asyncio.run(talk())
    assert [e["type"] for e in events if e["type"] != "audio"] == ["sentence.done", "sentence.done", "done"]
    assert [e["text"] for e in events if e["type"] == "sentence.done"] == sentences
    for i, want in enumerate(expected):
        pcm = b"".join(base64.b64decode(e["data"]) for e in events if e["type"] == "audio" and e["sentence"] == i)
        got = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1  # int16 rounding of streamed chunks
