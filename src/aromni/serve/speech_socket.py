"""``WebSocket /v1/audio/speech/stream``: incremental text in, speech out, sentence by sentence.

The client sends ``{"type": "text", "text": "..."}`` pieces as they come (from an LLM, say), ``{"type":
"flush"}`` to speak what it has sent so far, and ``{"type": "close"}`` to end. A sentence is spoken as soon as
its end (``.``, ``!`` or ``?`` followed by a space or the end of the text so far) arrives; the rest waits for a
flush or the close. Sentences are spoken in order, while more text keeps arriving.

The server sends ``{"type": "audio", "data": base64 int16 PCM, "sample_rate", "sentence": i}`` chunks as the
codec emits them, ``{"type": "sentence.done", "sentence": i, "text": ...}`` after each sentence, and ``{"type":
"done"}`` after the close, then closes the socket. Problems are ``{"type": "error", "error": {...}}`` (OpenAI's
error object; with ``"sentence": i`` when one sentence failed, and the session goes on). Authentication: the
``Authorization: Bearer KEY`` header or ``?api_key=KEY`` (browsers cannot set headers on a WebSocket). A
session holds one admission slot; each sentence has the request timeout. A socket that sends nothing for the
request timeout is closed, and at most ``MAX_PENDING_SENTENCES`` complete sentences wait to be spoken (then the
socket stops reading until one is done).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Iterator, Mapping

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from aromni.errors import AromniError
from aromni.serve.api_errors import APIError, as_api_error
from aromni.serve.audio_codec import b64, pcm16
from aromni.serve.runner import Job, ThreadedIterator
from aromni.serve.state import ServeState, key_matches, unauthorized
from aromni.utils.io import JSONValue

router = APIRouter()
#: A sentence ends at . ! ? (closing quotes or brackets included) before a space or the end of the text so far.
SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s|$)")
#: Close codes: policy violation (bad key), try again later (server busy).
CLOSE_POLICY, CLOSE_BUSY = 1008, 1013
#: Complete sentences waiting to be spoken before the socket stops reading (backpressure).
MAX_PENDING_SENTENCES = 16


def split_sentences(text: str) -> tuple[list[str], str]:
    """``(complete sentences, the rest)`` of ``text`` (sentences stripped; blank ones dropped)."""
    sentences, start = [], 0
    for m in SENTENCE_END.finditer(text):
        s = text[start:m.end()].strip()
        if s:
            sentences.append(s)
        start = m.end()
    return sentences, text[start:]


def error_message(e: APIError, sentence: int | None = None) -> dict[str, JSONValue]:
    out: dict[str, JSONValue] = {"type": "error", "error": e.detail()}
    if sentence is not None:
        out["sentence"] = sentence
    return out


@router.websocket("/v1/audio/speech/stream")
async def speech_stream(ws: WebSocket) -> None:
    state: ServeState = ws.app.state.aromni
    await ws.accept()
    if not key_matches(state.settings, ws.headers.get("authorization"), ws.query_params.get("api_key")):
        await ws.send_json(error_message(unauthorized()))
        await ws.close(CLOSE_POLICY)
        return
    try:
        slot = await state.admission.acquire()
    except APIError as e:
        await ws.send_json(error_message(e))
        await ws.close(CLOSE_BUSY)
        return
    try:
        await _Session(state, ws).run()
    finally:
        slot.release()


class _Session:
    """One socket: a receiver that cuts the text into sentences, a speaker that speaks them in order."""

    def __init__(self, state: ServeState, ws: WebSocket):
        self.state, self.ws = state, ws
        self.max_chars = state.settings.max_body_bytes
        self.current: Job | None = None

    async def run(self) -> None:
        # A small queue: a client that sends sentences faster than they are spoken waits (backpressure)
        # instead of growing the server's memory.
        send, receive = anyio.create_memory_object_stream[str](MAX_PENDING_SENTENCES)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._speaker, receive, tg)
            await self._guard(self._receiver(send), tg)

    async def _guard(self, work: Awaitable[None], tg: TaskGroup) -> None:
        """Await ``work``; a client that went away (or a broken send) stops the whole session."""
        try:
            await work
        except (WebSocketDisconnect, RuntimeError, OSError):
            if self.current is not None:
                self.current.abort()
            tg.cancel_scope.cancel()

    async def _receiver(self, sentences: MemoryObjectSendStream[str]) -> None:
        buffer = ""
        async with sentences:
            while True:
                try:
                    with anyio.fail_after(self.state.settings.request_timeout_s):
                        message = await self.ws.receive()
                except TimeoutError:  # an idle socket must not hold its admission slot forever
                    await self.ws.send_json(error_message(APIError(
                        408, f"no message for {self.state.settings.request_timeout_s:g} s", "send text, a flush "
                        "or a close within the server's timeout", code="idle_timeout")))
                    raise WebSocketDisconnect(CLOSE_POLICY) from None
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                try:
                    kind, text = self._parse(message)
                except APIError as e:
                    await self.ws.send_json(error_message(e))
                    continue
                if kind == "text":
                    if len(buffer) + len(text) > self.max_chars:
                        await self.ws.send_json(error_message(APIError(
                            400, f"more than {self.max_chars:,} characters of text without a sentence end",
                            "end sentences with . ! or ?, or send a flush", code="text_too_long")))
                        continue
                    done, buffer = split_sentences(buffer + text)
                    for s in done:
                        await sentences.send(s)
                elif kind in ("flush", "close"):
                    if buffer.strip():
                        await sentences.send(buffer.strip())
                    buffer = ""
                    if kind == "close":
                        return

    @staticmethod
    def _parse(message: Mapping[str, object]) -> tuple[str, str]:
        """``(type, text)`` of a client message; :class:`APIError` for a bad one."""
        raw = message.get("text")
        try:
            data = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            data = None
        problem = None
        if not isinstance(data, dict):
            problem = "a message must be a JSON object (in a text frame)"
        elif data.get("type") not in ("text", "flush", "close"):
            problem = f"unknown message type {data.get('type')!r}"
        elif data["type"] == "text" and not isinstance(data.get("text"), str):
            problem = "a text message needs a string 'text'"
        if problem is not None:
            raise APIError(400, problem, 'send {"type": "text", "text": "..."}, {"type": "flush"} or '
                           '{"type": "close"}', code="bad_message")
        return data["type"], data.get("text", "")

    async def _speaker(self, sentences: MemoryObjectReceiveStream[str], tg: TaskGroup) -> None:
        async def speak_all() -> None:
            i = 0
            async with sentences:
                async for text in sentences:
                    await self._speak(i, text)
                    i += 1
            await self.ws.send_json({"type": "done"})
            await self.ws.close()

        await self._guard(speak_all(), tg)

    async def _speak(self, i: int, text: str) -> None:
        state = self.state
        job = self.current = state.job()
        chunks = ThreadedIterator(job, lambda: _chunks(state, text, job))
        rate = state.model.speech.sample_rate if state.model.speech is not None else 0
        try:
            async for data in chunks:
                await self.ws.send_json({"type": "audio", "data": data, "sample_rate": rate, "sentence": i})
            await self.ws.send_json({"type": "sentence.done", "sentence": i, "text": text})
        except (APIError, AromniError) as e:
            await self.ws.send_json(error_message(as_api_error(e), i))
        except RuntimeError as e:
            # Starlette raises RuntimeError for a send on a closed socket (the session ends); anything else is a
            # fault of the model or the server, which the client must hear about (a logged 500).
            connected = WebSocketState.CONNECTED
            if self.ws.client_state != connected or self.ws.application_state != connected:
                raise
            await self.ws.send_json(error_message(as_api_error(e), i))
        finally:
            chunks.close()
            job.finish()
            self.current = None


def _chunks(state: ServeState, text: str, job: Job) -> Iterator[str]:
    """Worker side: one sentence's audio chunks as base64 int16 PCM."""
    first = True
    for chunk in state.model.tts(text, stream=True):
        if chunk.audio.numel():
            if first:
                state.metrics.first_audio.observe(time.perf_counter() - job.t_start)
                first = False
            yield b64(pcm16(chunk.audio))
