"""Every endpoint of the HTTP server answers what the library answers for the same request (FastAPI TestClient on
the shipped toy model): chat text/speech/images equal ``ChatSession`` replies with the same seed, streamed deltas
join to the non-streamed answer, TTS audio equals ``model.tts`` (streamed chunks concatenated too: the toy codec
streams exactly), transcriptions equal ``model.asr``, generated images equal ``model.t2i`` pixel for pixel, the
WebSocket speaks sentence by sentence, ``/v1/vivo`` equals the pipeline, and the metrics count what happened."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient
from servekit import (
    PICTURE_PNG,
    QUESTION_WAV,
    as_int16,
    data_url,
    file_b64,
    metric,
    pcm_from_b64,
    png_image,
    sse_payloads,
    wav_samples,
)

from aromni.omnivivo.api import VivoPipeline
from aromni.serve.app import create_app
from aromni.serve.audio_codec import wav_bytes
from aromni.serve.chat_request import assistant_ids
from aromni.serve.settings import ServeSettings
from aromni.serve.speech_socket import split_sentences
from aromni.vocab.tasks import CHAT

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "omnivivo"))
from test_vivo_api import build_tiny_export  # noqa: E402 - the tiny OmniVIVO export the API tests build

DRAW = "draw a big green circle at the top left on a beige background"


@pytest.fixture(scope="module")
def vivo(tmp_path_factory) -> VivoPipeline:
    parts = build_tiny_export(tmp_path_factory.mktemp("serve_vivo"))
    return VivoPipeline.load(parts["export"], parts["vq"])


@pytest.fixture(scope="module")
def client(toy_model, vivo):
    app = create_app(toy_model, ServeSettings(api_key=None, max_rows=3), vivo=vivo,
                     model_name="toy-omni")
    with TestClient(app) as c:
        yield c


def _session(model, seed, *, speech=False, image=False, append=None):
    opts = model.options(CHAT).updated(seed=seed, allow_speech=speech, allow_image=image)
    return model.chat(options=opts) if append is None else model.chat(options=opts, append_text=append)


def _chat(client, **body):
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return r


def test_chat_text_equals_the_library_and_its_stream(client, toy_model):
    messages = [{"role": "user", "content": "what is a red circle"}]
    want = _session(toy_model, 5).send(text="what is a red circle")
    body = _chat(client, model="x", messages=messages, seed=5).json()
    assert body["object"] == "chat.completion" and body["model"] == "toy-omni" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["content"] == want.text and want.text
    assert choice["message"]["audio"] is None and choice["message"]["images"] == []
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["completion_tokens"] == len(want.tokens) and usage["prompt_tokens"] == want.prompt_tokens
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    r = _chat(client, messages=messages, seed=5, stream=True, stream_options={"include_usage": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_payloads(r.text)
    assert events[-1] == "[DONE]" and events[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert all(e["object"] == "chat.completion.chunk" and e["id"] == events[0]["id"] for e in events[:-1])
    deltas = [e["choices"][0]["delta"].get("content", "") for e in events[1:-3]]
    assert len(deltas) > 1 and "".join(deltas).strip() == want.text
    assert events[-3]["choices"][0]["finish_reason"] == "stop" and events[-3]["choices"][0]["delta"] == {}
    assert events[-2]["choices"] == [] and events[-2]["usage"] == usage


def test_chat_history_maps_to_session_turns(client, toy_model):
    session = _session(toy_model, 1)
    first = session.send(text="what is a red circle")
    # An assistant message re-encodes to the ids the session remembered for that reply.
    turn = session.user_turn_ids(text="what is a red circle")
    assert session.history[0] == turn + assistant_ids(toy_model, first.text)
    second = session.send(text="what color is it", seed=2)
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is a red circle"}]},
                {"role": "assistant", "content": first.text},
                {"role": "user", "content": "what color is it"}]
    body = _chat(client, messages=messages, seed=2, max_tokens=40).json()
    assert body["choices"][0]["message"]["content"] == second.text
    assert body["usage"]["prompt_tokens"] == second.prompt_tokens


def test_chat_draws_images_as_png_data_urls(client, toy_model):
    want = _session(toy_model, 0, image=True, append="Reply with an image.").send(text=DRAW)
    messages = [{"role": "system", "content": "Reply with an image."}, {"role": "user", "content": DRAW}]
    body = _chat(client, messages=messages, modalities=["text", "image"], seed=0).json()
    images = body["choices"][0]["message"]["images"]
    assert len(images) == 1 == len(want.images) and images[0]["type"] == "image_url"
    got = png_image(images[0]["image_url"]["url"])
    side = toy_model.image.image_size
    assert got.size == (side, side) and np.array_equal(np.asarray(got), np.asarray(want.images[0]))

    events = sse_payloads(_chat(client, messages=messages, modalities=["text", "image"], seed=0, stream=True).text)
    streamed = [e["choices"][0]["delta"]["images"] for e in events[:-1] if "images" in e["choices"][0]["delta"]]
    assert len(streamed) == 1
    assert np.array_equal(np.asarray(png_image(streamed[0][0]["image_url"]["url"])), np.asarray(got))


def test_chat_hears_audio_and_images_and_speaks(client, toy_model):
    """input_audio + image_url in, speech out: WAV (non-streamed) and PCM deltas (streamed) equal the library's
    reply to the same files."""
    want = _session(toy_model, 0, speech=True, append="Reply in speech.").send(
        audio=str(QUESTION_WAV), images=[str(PICTURE_PNG)])
    assert want.audio, "the toy model answers this question in speech"
    expected = as_int16(torch.cat(want.audio))
    user = {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(PICTURE_PNG)}},
        {"type": "input_audio", "input_audio": {"data": file_b64(QUESTION_WAV), "format": "wav"}}]}
    body = {"messages": [{"role": "system", "content": "Reply in speech."}, user], "modalities": ["text", "audio"],
            "audio": {"format": "wav", "voice": "default"}, "seed": 0}
    message = _chat(client, **body).json()["choices"][0]["message"]
    audio = message["audio"]
    assert audio["format"] == "wav" and audio["id"].startswith("audio_") and audio["transcript"] == ""
    samples, rate = wav_samples(base64.b64decode(audio["data"]))
    assert rate == toy_model.speech.sample_rate and np.array_equal(samples, expected)

    events = sse_payloads(_chat(client, **body, stream=True).text)
    chunks = [e["choices"][0]["delta"]["audio"] for e in events[:-1] if "audio" in e["choices"][0]["delta"]]
    assert len(chunks) > 1 and {c["sample_rate"] for c in chunks} == {rate} and len({c["id"] for c in chunks}) == 1
    streamed = np.concatenate([pcm_from_b64(c["data"]) for c in chunks])
    assert streamed.shape == expected.shape and np.abs(streamed.astype(int) - expected).max() <= 1

    pcm = _chat(client, **{**body, "audio": {"format": "pcm16"}}).json()["choices"][0]["message"]["audio"]
    assert pcm["format"] == "pcm16" and np.array_equal(pcm_from_b64(pcm["data"]), expected)


def test_speech_equals_model_tts_streamed_or_not(client, toy_model):
    text = "a big blue star"
    want = as_int16(toy_model.tts(text, seed=0).audio)
    r = client.post("/v1/audio/speech", json={"model": "x", "input": text, "voice": "default", "seed": 0})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    samples, rate = wav_samples(r.content)
    assert rate == toy_model.speech.sample_rate == int(r.headers["x-sample-rate"])
    assert np.array_equal(samples, want)
    r = client.post("/v1/audio/speech", json={"input": text, "response_format": "pcm"})
    assert r.headers["content-type"] == "audio/pcm" and np.array_equal(np.frombuffer(r.content, "<i2"), want)

    r = client.post("/v1/audio/speech", json={"input": text, "stream": True, "seed": 0})
    events = sse_payloads(r.text)
    deltas, done = events[:-1], events[-1]
    assert len(deltas) > 2 and all(e["type"] == "speech.audio.delta" and e["sample_rate"] == rate for e in deltas)
    streamed = np.concatenate([pcm_from_b64(e["audio"]) for e in deltas])
    assert streamed.shape == want.shape and np.abs(streamed.astype(int) - want).max() <= 1
    assert done["type"] == "speech.audio.done" and done["usage"]["output_tokens"] > 0
    assert 0 < done["first_audio_s"] and done["rtf"] > 0 and done["audio_seconds"] == pytest.approx(len(want) / rate)


def test_transcription_equals_model_asr(client, toy_model, tmp_path):
    want = toy_model.asr(str(QUESTION_WAV)).text
    assert want
    files = {"file": ("q.wav", QUESTION_WAV.read_bytes(), "audio/wav")}
    r = client.post("/v1/audio/transcriptions", files=files, data={"model": "x"})
    assert r.status_code == 200 and r.json() == {"text": want}
    # Any rate and channel count soundfile reads: a 2-channel 22.05 kHz FLAC of the same speech.
    samples, rate = wav_samples(QUESTION_WAV.read_bytes())
    buf = io.BytesIO()
    sf.write(buf, np.stack([samples, samples], axis=1), rate, format="FLAC")
    r = client.post("/v1/audio/transcriptions", files={"file": ("q.flac", buf.getvalue())},
                    data={"response_format": "text"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain") and r.text == want + "\n"


def test_images_equal_model_t2i_with_seed_plus_index(client, toy_model):
    prompt = "a small orange diamond at the bottom left on a gray background"
    r = client.post("/v1/images/generations", json={"prompt": prompt, "n": 2, "seed": 3, "guidance_scale": 3.0})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data) == 2 and isinstance(r.json()["created"], int)
    side = toy_model.image.image_size
    for i, item in enumerate(data):
        got = png_image(item["b64_json"])
        want = toy_model.t2i(prompt, seed=3 + i, guidance_scale_text=3.0).image
        assert got.size == (side, side) and np.array_equal(np.asarray(got.convert("RGB")), np.asarray(want))
    assert not np.array_equal(np.asarray(png_image(data[0]["b64_json"])), np.asarray(png_image(data[1]["b64_json"])))


def test_sentences_split_at_their_ends():
    assert split_sentences("Hello there. How are") == (["Hello there."], " How are")
    assert split_sentences('Pi is 3.14! Really?" Yes') == (["Pi is 3.14!", 'Really?"'], " Yes")
    assert split_sentences("no end yet") == ([], "no end yet")
    assert split_sentences("Wait... ok.") == (["Wait...", "ok."], "")


def test_websocket_speaks_each_sentence_as_it_completes(client, toy_model):
    with client.websocket_connect("/v1/audio/speech/stream") as ws:
        for piece in ("a blue st", "ar. a red", " circle"):
            ws.send_json({"type": "text", "text": piece})
        ws.send_text("not json")
        ws.send_json({"type": "flush"})
        ws.send_json({"type": "text", "text": "a square"})
        ws.send_json({"type": "close"})
        messages = []
        while not messages or messages[-1]["type"] != "done":
            messages.append(ws.receive_json())
    errors = [m for m in messages if m["type"] == "error"]
    assert len(errors) == 1 and errors[0]["error"]["code"] == "bad_message"
    done = [m for m in messages if m["type"] == "sentence.done"]
    assert [(m["sentence"], m["text"]) for m in done] == [(0, "a blue star."), (1, "a red circle"), (2, "a square")]
    rate = toy_model.speech.sample_rate
    for i, text in enumerate(m["text"] for m in done):
        chunks = [m for m in messages if m["type"] == "audio" and m["sentence"] == i]
        assert chunks and all(c["sample_rate"] == rate for c in chunks)
        got = np.concatenate([pcm_from_b64(c["data"]) for c in chunks])
        want = as_int16(toy_model.tts(text).audio)
        assert got.shape == want.shape and np.abs(got.astype(int) - want).max() <= 1
        # Every chunk of a sentence comes before its sentence.done.
        assert messages.index(done[i]) > max(messages.index(c) for c in chunks)


def test_vivo_equals_the_pipeline(client, vivo):
    r = client.post("/v1/vivo", json={"prompt": "a red circle at the top left", "seed": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    want = vivo.generate("a red circle at the top left", seed=4)
    assert np.array_equal(np.asarray(png_image(body["image"])), np.asarray(want.image))
    assert base64.b64decode(body["audio"]) == wav_bytes(want.audio, want.sample_rate)
    assert body["sample_rate"] == want.sample_rate and body["timings"]["ftl"] > 0


def test_models_health_openapi_and_metrics(client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["toy-omni"]
    assert client.get("/health").json() == {"status": "ok"}
    spec = client.get("/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/audio/speech", "/v1/audio/transcriptions", "/v1/images/generations",
                 "/v1/models", "/v1/vivo", "/health"):
        assert path in spec["paths"]
    assert "ChatCompletionRequest" in spec["components"]["schemas"]
    before = metric(client.get("/metrics").text, "aromni_requests_total", endpoint="/health", status="200")
    client.get("/health")
    client.post("/v1/audio/speech", json={"input": "hi", "voice": "alloy"})
    text = client.get("/metrics").text
    assert metric(text, "aromni_requests_total", endpoint="/health", status="200") == before + 1
    assert metric(text, "aromni_requests_total", endpoint="/v1/audio/speech", status="400") >= 1
    assert metric(text, "aromni_tokens_total") > 0 and metric(text, "aromni_first_audio_seconds_count") > 0
    assert metric(text, "aromni_batch_rows") == 3 and metric(text, "aromni_batch_rows_busy") == 0
    for name in ("aromni_queue_depth", "aromni_active_requests", "aromni_tokens_per_second",
                 "aromni_requests_cancelled_total", "aromni_rows_freed_cancelled_total"):
        assert f"\n{name} " in text


def test_web_page_or_a_clear_404(client):
    r = client.get("/")
    page = Path(__file__).resolve().parents[2] / "src" / "aromni" / "serve" / "static" / "index.html"
    if page.is_file():
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    else:
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_web_page"
