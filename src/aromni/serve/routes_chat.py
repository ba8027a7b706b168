"""``POST /v1/chat/completions``: OpenAI chat completions, with speech and images in and out.

Non-streaming answers one ``chat.completion``: ``message.content`` (text), ``message.audio`` (the reply's
speech as base64 WAV, or raw int16 PCM with ``audio.format = "pcm16"``; ``null`` without speech) and
``message.images`` (PNG data URLs). Streaming sends ``chat.completion.chunk`` events: ``{"role": "assistant"}``
first, then ``{"content": ...}`` text deltas, ``{"audio": {"id", "data": base64 int16 PCM, "sample_rate"}}`` per
audio chunk as it is decoded, ``{"images": [...]}`` when an image completes, a last chunk with
``finish_reason``, then ``data: [DONE]``. An error after the stream has started is sent as
``data: {"error": {...}}`` and ends the stream.

Everything that touches the model or encodes media runs in worker threads: the generators below turn chat
events into wire deltas there.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import torch
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from aromni.inference.chat import ChatEvent, ChatReply
from aromni.serve.api_errors import APIError, as_api_error
from aromni.serve.audio_codec import b64, pcm16, wav_bytes
from aromni.serve.chat_request import build_session, chat_options, plan_chat
from aromni.serve.image_codec import png_data_url
from aromni.serve.runner import END, Job, ThreadedIterator
from aromni.serve.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    ErrorResponse,
    check_voice,
)
from aromni.serve.sse import DONE, EventStream, sse
from aromni.serve.state import ServeState, require_api_key, serve_state
from aromni.utils.io import JSONValue

router = APIRouter(dependencies=[Depends(require_api_key)])
ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 413, 429, 504)}
#: Engine stop reasons that mean the reply was cut short.
LENGTH_REASONS = ("max_new_tokens", "max_seq_len")


def finish_reason(stop_reason: str | None) -> str:
    return "length" if stop_reason in LENGTH_REASONS else "stop"


@dataclass
class _Final:
    """The end of a streamed reply: why it stopped and the token counts."""

    finish_reason: str
    usage: dict[str, int]


def _usage(reply: ChatReply) -> dict[str, int]:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": len(reply.tokens),
            "total_tokens": reply.prompt_tokens + len(reply.tokens)}


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERRORS)
async def chat_completions(body: ChatCompletionRequest, request: Request,
                           state: ServeState = Depends(serve_state)) -> Response | ChatCompletion:
    speech = "audio" in (body.modalities or [])
    if body.audio is not None:
        check_voice(body.audio.voice, "audio.voice")
    fmt = body.audio.format if body.audio is not None else "wav"
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    job = await state.start_job(request)
    if not body.stream:
        try:
            message, reason, usage = await job.call(lambda: _complete(state, body, fmt))
        finally:
            job.finish()
        return ChatCompletion(id=cid, created=created, model=state.model_name, usage=usage,
                              choices=[{"index": 0, "message": message, "finish_reason": reason}])
    deltas = ThreadedIterator(job, lambda: _stream_deltas(state, body, speech, job))
    first = await deltas.first()  # bad input fails here, as a plain 400

    def chunk(delta: dict[str, JSONValue], reason: str | None = None) -> bytes:
        return sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": state.model_name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]})

    async def events() -> AsyncIterator[bytes]:
        item = first
        try:
            yield chunk({"role": "assistant"})
            while not (item is END or isinstance(item, _Final)):
                yield chunk(item)
                item = await deltas.next()
            if isinstance(item, _Final):
                yield chunk({}, item.finish_reason)
                if body.stream_options is not None and body.stream_options.include_usage:
                    yield sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                               "model": state.model_name, "choices": [], "usage": item.usage})
            yield DONE
        except Exception as e:  # noqa: BLE001 - the stream has started: report it in the stream
            yield sse({"error": as_api_error(e).detail()})
        finally:
            deltas.close()

    return EventStream(events(), deltas.finish)


def _session_stream(state: ServeState, body: ChatCompletionRequest, audio_chunks: bool) -> Iterator[ChatEvent]:
    plan = plan_chat(body.messages, state.settings)
    session = build_session(state.model, plan, chat_options(state.model, body))
    t = plan.turn
    return session.stream(text=t.text, audio=t.audio, images=t.images, sample_rate=t.sample_rate,
                          audio_chunks=audio_chunks)


def _complete(state: ServeState, body: ChatCompletionRequest, fmt: str
              ) -> tuple[dict[str, JSONValue], str, dict[str, int]]:
    """Worker side, non-streaming: ``(message, finish_reason, usage)``."""
    reply = None
    for ev in _session_stream(state, body, audio_chunks=False):
        if ev.kind == "reply":
            reply = ev.value
    if not isinstance(reply, ChatReply):
        raise APIError(500, "the chat produced no reply", code="internal_error")
    audio = None
    if reply.audio:
        wav, rate = torch.cat(reply.audio), state.model.speech.sample_rate
        data = wav_bytes(wav, rate) if fmt == "wav" else pcm16(wav)
        audio = {"id": f"audio_{uuid.uuid4().hex}", "data": b64(data), "format": fmt, "transcript": "",
                 "sample_rate": rate}
    images = [{"type": "image_url", "image_url": {"url": png_data_url(im)}} for im in reply.images]
    message = {"role": "assistant", "content": reply.text, "audio": audio, "images": images}
    return message, finish_reason(reply.stop_reason), _usage(reply)


def _stream_deltas(state: ServeState, body: ChatCompletionRequest, speech: bool, job: Job
                   ) -> Iterator[dict[str, JSONValue] | _Final]:
    """Worker side, streaming: wire deltas, then a :class:`_Final`."""
    audio_id = f"audio_{uuid.uuid4().hex}"
    rate = state.model.speech.sample_rate if state.model.speech is not None else 0
    first_audio = True
    for ev in _session_stream(state, body, audio_chunks=speech):
        if ev.kind == "text" and ev.value:
            yield {"content": ev.value}
        elif ev.kind == "audio_chunk" and ev.value.audio.numel():
            if first_audio:
                state.metrics.first_audio.observe(time.perf_counter() - job.t_start)
                first_audio = False
            yield {"audio": {"id": audio_id, "data": b64(pcm16(ev.value.audio)), "sample_rate": rate}}
        elif ev.kind == "image":
            yield {"images": [{"type": "image_url", "image_url": {"url": png_data_url(ev.value)}}]}
        elif ev.kind == "reply":
            yield _Final(finish_reason(ev.value.stop_reason), _usage(ev.value))
