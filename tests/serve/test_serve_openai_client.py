"""The official ``openai`` client works against the server (a real uvicorn on 127.0.0.1, with an API key): chat
completions (plain and streamed), speech, transcriptions and image generation answer what the library answers,
and errors arrive as the client's typed exceptions with our message."""

from __future__ import annotations

import io

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI
from servekit import QUESTION_WAV, as_int16, live_server, png_image, wav_samples

from aromni.serve.app import create_app
from aromni.serve.settings import ServeSettings
from aromni.vocab.tasks import CHAT

KEY = "sk-test"


@pytest.fixture(scope="module")
def base_url(toy_model):
    with live_server(create_app(toy_model, ServeSettings(api_key=KEY, max_rows=3), model_name="toy")) as url:
        yield url + "/v1"


@pytest.fixture(scope="module")
def client(base_url):
    with OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=60) as c:
        yield c


def test_chat_completions_plain_and_streamed(client, toy_model):
    want = toy_model.chat(options=toy_model.options(CHAT).updated(seed=7, allow_speech=False, allow_image=False)
                          ).send(text="what is a red circle")
    messages = [{"role": "user", "content": "what is a red circle"}]
    out = client.chat.completions.create(model="toy", messages=messages, seed=7)
    assert out.model == "toy" and out.choices[0].message.content == want.text and out.choices[0].finish_reason == "stop"
    assert out.usage.completion_tokens == len(want.tokens)
    stream = client.chat.completions.create(model="toy", messages=messages, seed=7, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() == want.text and chunks[-1].choices[0].finish_reason == "stop"


def test_speech_and_transcription(client, toy_model):
    want = as_int16(toy_model.tts("a red circle", seed=1).audio)
    audio = client.audio.speech.create(model="toy", input="a red circle", voice="default", response_format="wav",
                                       extra_body={"seed": 1})
    samples, rate = wav_samples(audio.content)
    assert rate == toy_model.speech.sample_rate and np.array_equal(samples, want)
    text = client.audio.transcriptions.create(model="toy", file=("q.wav", io.BytesIO(QUESTION_WAV.read_bytes())))
    assert text.text == toy_model.asr(str(QUESTION_WAV)).text


def test_image_generation(client, toy_model):
    out = client.images.generate(model="toy", prompt="a small orange diamond", n=1, response_format="b64_json",
                                 extra_body={"seed": 2})
    got = png_image(out.data[0].b64_json)
    want = toy_model.t2i("a small orange diamond", seed=2).image
    assert got.size == want.size and np.array_equal(np.asarray(got.convert("RGB")), np.asarray(want))


def test_errors_are_typed_with_our_message(client, base_url):
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="toy", input="hi", voice="alloy")
    assert e.value.status_code == 400 and "unknown voice 'alloy'" in e.value.message
    assert e.value.body["hint"]  # the client hands over the inner error object
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
    assert [m.id for m in client.models.list()] == ["toy"]
    r = httpx.get(base_url.removesuffix("/v1") + "/health")
    assert r.json() == {"status": "ok"}
