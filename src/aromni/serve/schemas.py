"""Request and response bodies of the HTTP API (pydantic), so ``/openapi.json`` documents the wire format.

The request models follow OpenAI's (unknown fields are ignored, as OpenAI clients send optional extras); the
aromni extensions are marked. Numbers are checked here (a bad one is a ``400`` naming the field); everything
that needs the model (text length, audio length, image size) is checked by the routes.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from aromni.serve.api_errors import APIError

#: Seeds fit torch's 64-bit generators.
SEED_LIMIT = 2**63

Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT, description="random seed (reproducible sampling)")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------------------------- errors
class ErrorDetail(_Response):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    hint: str | None = Field(None, description="how to fix it (aromni extension)")


class ErrorResponse(_Response):
    error: ErrorDetail


# --------------------------------------------------------------------------------------------- chat
class TextPart(_Request):
    type: Literal["text"]
    text: str


class ImageURL(_Request):
    url: str = Field(description="a data URL (data:image/png;base64,...); other URLs are refused")
    detail: str | None = None


class ImagePart(_Request):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(_Request):
    data: str = Field(description="base64 audio file bytes")
    format: Literal["wav", "flac", "ogg", "mp3"] = "wav"


class AudioPart(_Request):
    type: Literal["input_audio"]
    input_audio: InputAudio


ContentPart = Annotated[Union[TextPart, ImagePart, AudioPart], Field(discriminator="type")]


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class AudioOutputParam(_Request):
    format: Literal["wav", "pcm16"] = "wav"
    voice: str | None = Field(None, description="only 'default' (or absent)")


class StreamOptions(_Request):
    include_usage: bool = False


class ChatCompletionRequest(_Request):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    modalities: list[Literal["text", "audio", "image"]] | None = Field(
        None, description="output modalities: 'audio' lets the reply speak, 'image' lets it draw (default text)")
    audio: AudioOutputParam | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: Seed | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, description="0: greedy")
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=1, description="one choice per request")


class Usage(_Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatAudio(_Response):
    id: str
    data: str = Field(description="base64 WAV (or raw int16 PCM with audio.format 'pcm16')")
    format: str
    transcript: str = ""
    sample_rate: int | None = None
    expires_at: int | None = None


class ChatImageURL(_Response):
    url: str


class ChatImage(_Response):
    type: Literal["image_url"] = "image_url"
    image_url: ChatImageURL


class AssistantMessage(_Response):
    role: Literal["assistant"] = "assistant"
    content: str
    audio: ChatAudio | None = None
    images: list[ChatImage] = Field(default_factory=list)


class Choice(_Response):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None


class ChatCompletion(_Response):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


# --------------------------------------------------------------------------------------------- audio
class SpeechRequest(_Request):
    model: str | None = None
    input: str = Field(description="the text to speak")
    voice: str | None = Field(None, description="only 'default' (or absent)")
    response_format: Literal["wav", "pcm"] = Field(
        "wav", description="wav, or pcm: raw int16 little-endian mono at the model's rate (X-Sample-Rate header)")
    stream: bool = Field(False, description="server-sent events of audio deltas (aromni extension)")
    stream_format: Literal["sse", "audio"] | None = Field(None, description="'sse' is the same as stream=true")
    speed: float | None = Field(None, description="only 1.0")
    seed: Seed | None = None


class Transcription(_Response):
    text: str


# --------------------------------------------------------------------------------------------- images
class ImageGenerationRequest(_Request):
    model: str | None = None
    prompt: str
    n: int = Field(1, ge=1, le=4)
    response_format: Literal["b64_json"] = "b64_json"
    size: str | None = Field(None, description="only the model's size (e.g. 256x256), or absent")
    seed: Seed | None = Field(None, description="image i uses seed + i (aromni extension)")
    guidance_scale: float | None = Field(None, ge=0, le=100, description="classifier-free guidance text scale")


class ImageData(_Response):
    b64_json: str


class ImagesResponse(_Response):
    created: int
    data: list[ImageData]


# --------------------------------------------------------------------------------------------- misc
class ModelCard(_Response):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "aromni"


class ModelList(_Response):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(_Response):
    status: Literal["ok"] = "ok"


class VivoRequest(_Request):
    prompt: str
    seed: Seed = 0


class VivoResponse(_Response):
    image: str | None = Field(description="base64 PNG (null when the server has no VQ)")
    audio: str = Field(description="base64 WAV")
    sample_rate: int
    timings: dict[str, float | None] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------- checks
#: The voices the model speaks in (one: the toy and AR-Omni bundles have no speaker control).
VOICES = ("default",)


def check_voice(voice: str | None, param: str) -> None:
    """``None`` or a voice of :data:`VOICES`; :class:`APIError` 400 naming the allowed ones otherwise."""
    if voice is not None and voice not in VOICES:
        raise APIError(400, f"unknown voice {voice!r}: this model speaks in one voice, "
                       f"{', '.join(repr(v) for v in VOICES)}",
                       f"send {param}: \"default\" or leave it out", param=param, code="unsupported_voice")
