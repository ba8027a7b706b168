"""``POST /v1/audio/speech`` (text to speech) and ``POST /v1/audio/transcriptions`` (speech to text).

Speech: non-streaming answers the audio file (``wav``; or ``pcm``: raw int16 little-endian mono at the model's
rate, given in the ``X-Sample-Rate`` header). ``stream: true`` (or ``stream_format: "sse"``) answers server-sent
events: ``{"type": "speech.audio.delta", "audio": base64 int16 PCM, "sample_rate"}`` per chunk as the codec
emits it, then ``{"type": "speech.audio.done", "usage", "first_audio_s", "rtf", "audio_seconds"}``
(``first_audio_s`` and ``rtf`` as :class:`~aromni.inference.streaming.StreamMetrics` measures them).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response

from aromni.errors import AromniError
from aromni.serve.api_errors import APIError, as_api_error
from aromni.serve.audio_codec import b64, pcm16, read_audio, wav_bytes
from aromni.serve.runner import END, Job, ThreadedIterator
from aromni.serve.schemas import ErrorResponse, SpeechRequest, Transcription, check_voice
from aromni.serve.sse import EventStream, sse
from aromni.serve.state import ServeState, require_api_key, serve_state
from aromni.utils.io import JSONValue

router = APIRouter(dependencies=[Depends(require_api_key)])
ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 413, 429, 504)}
MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm"}
SPEECH_CONTENT = {"audio/wav": {}, "audio/pcm": {}, "text/event-stream": {}}


@router.post("/v1/audio/speech", response_class=Response,
             responses={200: {"content": SPEECH_CONTENT, "description": "the audio, or its events"}, **ERRORS})
async def speech(body: SpeechRequest, request: Request, state: ServeState = Depends(serve_state)) -> Response:
    check_voice(body.voice, "voice")
    if body.speed is not None and body.speed != 1.0:
        raise APIError(400, f"speed {body.speed:g} is not supported: the model speaks at its own pace",
                       "leave speed out (or send 1.0)", param="speed", code="unsupported_value")
    rate = state.model.speech.sample_rate if state.model.speech is not None else 0
    headers = {"X-Sample-Rate": str(rate)}
    job = await state.start_job(request)
    if not (body.stream or body.stream_format == "sse"):
        try:
            data = await job.call(lambda: _synthesize(state, body))
        finally:
            job.finish()
        return Response(data, media_type=MEDIA_TYPES[body.response_format], headers=headers)
    deltas = ThreadedIterator(job, lambda: _speech_events(state, body, job))
    first = await deltas.first()  # bad input fails here, as a plain 400

    async def events() -> AsyncIterator[bytes]:
        item = first
        try:
            while item is not END:
                yield sse(item)
                item = await deltas.next()
        except Exception as e:  # noqa: BLE001 - the stream has started: report it in the stream
            yield sse({"type": "error", "error": as_api_error(e).detail()})
        finally:
            deltas.close()

    return EventStream(events(), deltas.finish, headers=headers)


def _synthesize(state: ServeState, body: SpeechRequest) -> bytes:
    """Worker side: the whole utterance as file bytes."""
    out = state.model.tts(body.input, seed=body.seed)
    return wav_bytes(out.audio, out.sample_rate) if body.response_format == "wav" else pcm16(out.audio)


def _speech_events(state: ServeState, body: SpeechRequest, job: Job) -> Iterator[dict[str, JSONValue]]:
    """Worker side: ``speech.audio.delta`` events, then ``speech.audio.done``."""
    stream = state.model.tts(body.input, stream=True, seed=body.seed)
    rate = state.model.speech.sample_rate
    first = True
    for chunk in stream:
        if not chunk.audio.numel():
            continue
        if first:
            state.metrics.first_audio.observe(time.perf_counter() - job.t_start)
            first = False
        yield {"type": "speech.audio.delta", "audio": b64(pcm16(chunk.audio)), "sample_rate": rate}
    g, m = stream.results[0], stream.metrics[0]
    if g.stop_reason == "cancelled":
        return
    if first:
        raise AromniError(f"the model produced no speech tokens ({len(g.tokens)} tokens, stop: {g.stop_reason})",
                          "check that the bundle was trained for TTS")
    usage = {"input_tokens": len(g.prompt), "output_tokens": len(g.tokens),
             "total_tokens": len(g.prompt) + len(g.tokens)}
    yield {"type": "speech.audio.done", "usage": usage, "first_audio_s": m.first_audio, "rtf": m.rtf,
           "audio_seconds": m.audio_seconds, "sample_rate": rate}


@router.post("/v1/audio/transcriptions", response_model=Transcription,
             responses={200: {"content": {"text/plain": {}}}, **ERRORS})
async def transcriptions(request: Request, file: UploadFile = File(description="wav, flac or ogg"),
                         model: str | None = Form(None), response_format: Literal["json", "text"] = Form("json"),
                         language: str | None = Form(None), prompt: str | None = Form(None),
                         temperature: float | None = Form(None),
                         state: ServeState = Depends(serve_state)) -> Response | Transcription:
    data = await file.read()
    job = await state.start_job(request)
    try:
        text = await job.call(lambda: _transcribe(state, data))
    finally:
        job.finish()
    if response_format == "text":
        return PlainTextResponse(text + "\n")
    return Transcription(text=text)


def _transcribe(state: ServeState, data: bytes) -> str:
    samples, rate = read_audio(data, state.settings.max_audio_seconds, "the uploaded file")
    return state.model.asr(samples, sample_rate=rate).text
