"""Bad requests to every endpoint get one OpenAI-shaped JSON error (400/401/404), naming the field and the fix,
before any generation runs; no traceback and no path reaches the server's files."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from servekit import PICTURE_PNG, QUESTION_WAV, error_of, file_b64, metric

from aromni.serve.app import create_app
from aromni.serve.settings import ServeSettings

KEY = "test-key"
CHAT, SPEECH, ASR, IMAGES = "/v1/chat/completions", "/v1/audio/speech", "/v1/audio/transcriptions", \
    "/v1/images/generations"


@pytest.fixture(scope="module")
def client(toy_model):
    with TestClient(create_app(toy_model, ServeSettings(api_key=None, max_rows=3))) as c:
        yield c


@pytest.fixture(scope="module")
def locked(toy_model):
    """An app that requires the API key (on its own engine: the model's first app put its engine back)."""
    with TestClient(create_app(toy_model, ServeSettings(api_key=KEY, max_rows=3))) as c:
        yield c


def _user(*parts):
    return {"messages": [{"role": "user", "content": list(parts)}]}


def _bad(client, path, status=400, **kw):
    r = client.post(path, **kw)
    assert r.status_code == status, r.text
    return error_of(r)


@pytest.mark.parametrize("body, param, words", [
    ({}, "messages", "required"),
    ({"messages": []}, "messages", "at least 1"),
    ({"messages": [{"role": "usr", "content": "hi"}]}, "messages.0.role", "'user'"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, "temperature", "2"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens", "1"),
    ({"messages": [{"role": "user", "content": "hi"}], "seed": -1}, "seed", "0"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n", "1"),
    ({"messages": [{"role": "user", "content": "hi"}], "modalities": ["video"]}, "modalities.0", "'audio'"),
    ({"messages": [{"role": "user", "content": "hi"}], "audio": {"format": "mp3"}}, "audio.format", "'wav'"),
    ({"messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]}, "messages.0.content", ""),
])
def test_chat_schema_errors_are_400_naming_the_field(client, body, param, words):
    err = _bad(client, CHAT, json=body)
    assert err["type"] == "invalid_request_error" and err["param"].startswith(param) and words in err["message"]


@pytest.mark.parametrize("body, words", [
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "last message must be a user message"),
    ({"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "hi"}]}, "start with a user"),
    ({"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "   "}]}, "text or audio"),
    (_user({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, {"type": "text", "text": "hi"}),
     "data URL"),
    (_user({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}, {"type": "text", "text": "hi"}),
     "data URL"),
    (_user({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}, {"type": "text", "text": "x"}),
     "not valid base64"),
    (_user({"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"no").decode()}},
           {"type": "text", "text": "x"}), "not an image"),
    (_user({"type": "input_audio", "input_audio": {"data": "/etc/passwd", "format": "wav"}}), "not valid base64"),
    (_user({"type": "input_audio", "input_audio": {"data": file_b64(PICTURE_PNG), "format": "wav"}}),
     "not a readable audio file"),
    (_user({"type": "input_audio", "input_audio": {"data": file_b64(QUESTION_WAV)}},
           {"type": "input_audio", "input_audio": {"data": file_b64(QUESTION_WAV)}}), "one audio clip"),
    ({"messages": [{"role": "user", "content": "hi"},
                   {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]},
                   {"role": "user", "content": "hi"}]}, "only text"),
    ({"messages": [{"role": "user", "content": "hi"}], "audio": {"voice": "alloy"}}, "'default'"),
    ({"messages": [{"role": "user", "content": "x" * 200_000}]}, "context"),
])
def test_chat_conversation_errors_are_400_with_a_hint(client, body, words):
    for stream in (False, True):  # a stream that cannot start fails as plain JSON, not as an event
        err = _bad(client, CHAT, json={**body, "stream": stream})
        assert words in err["message"] and err["hint"]


@pytest.mark.parametrize("body, words", [
    ({"input": "hi", "voice": "alloy"}, "'default'"),
    ({"input": "hi", "response_format": "mp3"}, "'wav' or 'pcm'"),
    ({"input": "hi", "speed": 2.0}, "speed"),
    ({"input": ""}, "empty"),
    ({"input": 5}, "string"),
    ({"voice": "default"}, "required"),
])
def test_speech_errors(client, body, words):
    for stream in (False, True):
        assert words in _bad(client, SPEECH, json={**body, "stream": stream})["message"]


def test_transcription_errors(client):
    assert "required" in _bad(client, ASR, data={"model": "x"})["message"]
    err = _bad(client, ASR, files={"file": ("a.wav", PICTURE_PNG.read_bytes())})
    assert "not a readable audio file" in err["message"] and "WAV" in err["hint"]
    assert "empty" in _bad(client, ASR, files={"file": ("a.wav", b"")})["message"]
    err = _bad(client, ASR, files={"file": ("q.wav", QUESTION_WAV.read_bytes())}, data={"response_format": "srt"})
    assert err["param"] == "response_format"
    assert _bad(client, ASR, json={"file": "/etc/passwd"})["param"] == "file"  # no paths: an upload or nothing


@pytest.mark.parametrize("body, words", [
    ({"prompt": "a red circle", "n": 5}, "4"),
    ({"prompt": "a red circle", "response_format": "url"}, "'b64_json'"),
    ({"prompt": "a red circle", "size": "1024x1024"}, "64x64"),
    ({"prompt": ""}, "empty"),
    ({"prompt": "a red circle", "guidance_scale": -1}, "0"),
    ({}, "required"),
])
def test_image_errors(client, body, words):
    assert words in _bad(client, IMAGES, json=body)["message"]


def test_malformed_json_unknown_routes_and_no_vivo(client):
    err = _bad(client, CHAT, content=b'{"messages": [', headers={"content-type": "application/json"})
    assert "JSON" in err["message"] or "json" in err["message"]
    err = error_of(client.get("/v1/nothing"))
    assert err["type"] == "not_found_error"
    err = _bad(client, "/v1/vivo", 404, json={"prompt": "a red circle"})
    assert "no OmniVIVO pipeline" in err["message"] and "--vivo" in err["hint"]
    assert client.get("/v1/chat/completions").status_code == 405


def test_bad_requests_never_reach_the_engine(client):
    tokens = metric(client.get("/metrics").text, "aromni_tokens_total")
    _bad(client, CHAT, json=_user({"type": "image_url", "image_url": {"url": "https://x"}}))
    _bad(client, SPEECH, json={"input": "hi", "voice": "alloy"})
    assert metric(client.get("/metrics").text, "aromni_tokens_total") == tokens


def test_api_key_is_required_on_v1_only(locked):
    ok = {"Authorization": f"Bearer {KEY}"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        r = locked.get("/v1/models", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        err = error_of(r)
        assert err["type"] == "authentication_error" and "--api-key" in err["hint"]
        assert locked.post(SPEECH, json={"input": "hi"}, headers=headers).status_code == 401
    assert locked.get("/v1/models", headers=ok).status_code == 200
    assert locked.get("/health").status_code == 200 and locked.get("/metrics").status_code == 200
    # A bad body with a bad key is refused for the key first.
    assert locked.post(CHAT, json={}, headers={}).status_code == 401
    with locked.websocket_connect("/v1/audio/speech/stream") as ws:
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["error"]["code"] == "invalid_api_key"
    with locked.websocket_connect(f"/v1/audio/speech/stream?api_key={KEY}") as ws:
        ws.send_json({"type": "close"})
        assert ws.receive_json() == {"type": "done"}


def test_websocket_bad_messages_keep_the_session(client):
    with client.websocket_connect("/v1/audio/speech/stream") as ws:
        for bad in ("[1, 2]", '{"type": "speak"}', '{"type": "text", "text": 5}', "{"):
            ws.send_text(bad)
            msg = ws.receive_json()
            assert msg["type"] == "error" and msg["error"]["code"] == "bad_message" and msg["error"]["hint"]
        ws.send_json({"type": "close"})
        assert ws.receive_json() == {"type": "done"}
