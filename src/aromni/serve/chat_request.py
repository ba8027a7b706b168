"""OpenAI chat messages -> an aromni :class:`~aromni.inference.chat.ChatSession` with its history, and the turn
to answer.

How the messages map (the official chat format has no system prompt and alternating turns):

* ``system`` (and ``developer``) messages, joined, replace the instruction the official format appends to every
  user turn (:data:`~aromni.vocab.templates.OFFICIAL_CHAT_APPEND`); e.g. ``"Reply in speech."``;
* consecutive ``user`` messages merge into one turn (their text joined by spaces, their images in order, at
  most one audio clip per turn), as do consecutive ``assistant`` messages (text only);
* the last message must be a ``user`` message: it is the turn to answer; the turns before it become
  ``session.history`` (user turns through ``user_turn_ids``, assistant turns as their text closed by ``<eom>``).

Media are decoded here (base64 -> PIL images / waveforms, with the server's limits), so this runs in a worker
thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from aromni.errors import InputError
from aromni.inference.chat import ChatSession
from aromni.inference.omni import OmniModel
from aromni.inference.options import DecodeOptions
from aromni.serve.audio_codec import b64decode, read_audio
from aromni.serve.image_codec import decode_data_url
from aromni.serve.schemas import AudioPart, ChatCompletionRequest, ChatMessage, ImagePart, TextPart
from aromni.serve.settings import ServeSettings
from aromni.vocab.conversation import encode_segment
from aromni.vocab.segments import TextSegment
from aromni.vocab.tasks import CHAT

if TYPE_CHECKING:  # Pillow is an optional extra
    from PIL import Image


@dataclass
class UserTurn:
    """One user turn: text, an audio clip (mono float32 ``[T]`` at ``sample_rate``) and images."""

    text: str | None = None
    audio: np.ndarray | None = None
    sample_rate: int | None = None
    images: list[Image.Image] = field(default_factory=list)


@dataclass
class ChatPlan:
    """``history``: ``(user turn, assistant text)`` pairs, oldest first; ``turn``: the one to answer;
    ``append_text``: the system text (``None``: the official instruction)."""

    history: list[tuple[UserTurn, str]]
    turn: UserTurn
    append_text: str | None


def chat_options(model: OmniModel, body: ChatCompletionRequest) -> DecodeOptions:
    """The chat task's options with the request's sampling, length, seed and output modalities."""
    modalities = set(body.modalities or ["text"])
    text: dict[str, object] = {}
    if body.temperature == 0:
        text["greedy"] = True
    elif body.temperature is not None:
        text.update(temperature=body.temperature, greedy=False)
    if body.top_p is not None:
        text["top_p"] = body.top_p
    top: dict[str, object] = {"allow_speech": "audio" in modalities, "allow_image": "image" in modalities}
    limit = body.max_completion_tokens or body.max_tokens
    if limit is not None:
        top["max_new_tokens"] = limit
    if body.seed is not None:
        top["seed"] = body.seed
    return model.options(CHAT).updated(text=text, **top)


def plan_chat(messages: list[ChatMessage], settings: ServeSettings) -> ChatPlan:
    """The messages as history + the turn to answer (see the module docstring); :class:`InputError` naming the
    message for a conversation that does not fit the chat format."""
    system: list[str] = []
    groups: list[tuple[str, list[tuple[int, ChatMessage]]]] = []
    for i, m in enumerate(messages):
        if m.role in ("system", "developer"):
            system.append(_text_only(m, i))
            continue
        if groups and groups[-1][0] == m.role:
            groups[-1][1].append((i, m))
        else:
            groups.append((m.role, [(i, m)]))
    if not groups or groups[-1][0] != "user":
        raise InputError("the last message must be a user message (the turn to answer)",
                         "end messages with {\"role\": \"user\", ...}")
    if groups[0][0] != "user":
        raise InputError("the conversation must start with a user message (after any system messages)",
                         "put the user's first message before the assistant's")
    _check_media_counts(messages, settings)
    turns = [_user_turn(g, settings) for role, g in groups if role == "user"]
    replies = [" ".join(_text_only(m, i) for i, m in g).strip() for role, g in groups if role == "assistant"]
    append = " ".join(s for s in system if s.strip()) or None
    return ChatPlan(list(zip(turns[:-1], replies)), turns[-1], append)


def _check_media_counts(messages: list[ChatMessage], settings: ServeSettings) -> None:
    """Refuse too many images or audio clips before any is decoded (each is checked for size on its own, but a
    small body can hold thousands of tiny, highly compressed images)."""
    parts = [p for m in messages if not isinstance(m.content, str) for p in (m.content or [])]
    for kind, n, limit, name in (("images", sum(isinstance(p, ImagePart) for p in parts), settings.max_images,
                                  "max_images"),
                                 ("audio clips", sum(isinstance(p, AudioPart) for p in parts),
                                  settings.max_audio_clips, "max_audio_clips")):
        if n > limit:
            raise InputError(f"the conversation holds {n} {kind}, over this server's limit of {limit} ({name})",
                             f"send at most {limit} {kind} per request")


def build_session(model: OmniModel, plan: ChatPlan, options: DecodeOptions) -> ChatSession:
    """A chat session whose history holds ``plan.history`` (ids as the session itself would remember them)."""
    session = model.chat(options=options) if plan.append_text is None else model.chat(
        options=options, append_text=plan.append_text)
    for user, reply in plan.history:
        ids = session.user_turn_ids(text=user.text, audio=user.audio, images=user.images,
                                    sample_rate=user.sample_rate)
        session.history.append(ids + assistant_ids(model, reply))
    return session


def assistant_ids(model: OmniModel, text: str) -> list[int]:
    """An assistant turn's ids: its text, then ``<eom>``."""
    body: list[int] = []
    if text:
        pre, content, post = encode_segment(TextSegment(text), model.layout, model.text)
        body = pre + content + post
    return body + [model.layout.eom]


def _text_only(m: ChatMessage, i: int) -> str:
    if m.content is None or isinstance(m.content, str):
        return m.content or ""
    texts = []
    for part in m.content:
        if not isinstance(part, TextPart):
            raise InputError(f"messages[{i}] ({m.role}) may hold only text, got a {part.type} part",
                             "send images and audio in user messages")
        texts.append(part.text)
    return " ".join(texts)


def _user_turn(group: list[tuple[int, ChatMessage]], settings: ServeSettings) -> UserTurn:
    turn = UserTurn()
    texts: list[str] = []
    for i, m in group:
        parts = [TextPart(type="text", text=m.content)] if isinstance(m.content, str) else (m.content or [])
        for j, part in enumerate(parts):
            where = f"messages[{i}].content[{j}]"
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, ImagePart):
                turn.images.append(decode_data_url(part.image_url.url, settings.max_image_pixels, f"{where} image"))
            elif isinstance(part, AudioPart):
                if turn.audio is not None:
                    raise InputError(f"{where}: a user turn takes one audio clip",
                                     "send one input_audio part per user turn")
                data = b64decode(part.input_audio.data, f"{where} input_audio.data")
                turn.audio, turn.sample_rate = read_audio(data, settings.max_audio_seconds, f"{where} audio")
    turn.text = " ".join(t.strip() for t in texts if t.strip()) or None
    if turn.text is None and turn.audio is None:
        raise InputError(f"messages[{group[0][0]}]: a user turn needs text or audio",
                         "send some text or an input_audio part (images go with one of them)")
    return turn
