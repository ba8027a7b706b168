"""Multi-turn chat in the official format, with history, overflow handling and interleaved replies.

The prompt of turn ``n`` is ``<bos> history' USER: [images] [speech] [typed text] append_text <eoh> GPT:``
(``official-formats.md`` §C.2, :func:`~aromni.vocab.templates.official_chat_turn`), where ``history'`` is the
previous turns (user part + ``GPT:`` + the generated reply) joined by ``<eom>``: a reply that stopped at ``<eom>``
keeps it, one that stopped otherwise gets one appended and a trailing ``<eos>`` is dropped (the official runner
does the same at the end of the history). With the paper's style every turn carries its own ``<bos>``.

When the prompt plus the room reserved for the reply exceeds the context, the oldest turns are dropped (a
:class:`HistoryTruncatedWarning` says how many); a turn too long on its own raises
:class:`~aromni.errors.InputError`.

Typed text goes in as text (the official runner synthesises it with an external TTS first; we do not).
"""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from aromni.errors import ConfigError, InputError
from aromni.inference import media
from aromni.inference.engine import Engine
from aromni.inference.events import IncrementalText, SegmentAssembler
from aromni.inference.media import AudioInput, ImageInput
from aromni.inference.options import DecodeOptions
from aromni.inference.streaming import SpeechStreamer
from aromni.tokenizers.base import ImageTokenizer, SpeechTokenizer, Tokenizer
from aromni.vocab.conversation import Conversation, ImageSegment, PromptStyle, Segment, SpeechSegment, TextSegment
from aromni.vocab.layout import VocabLayout
from aromni.vocab.tasks import CHAT, Task
from aromni.vocab.templates import OFFICIAL_CHAT_APPEND, official_chat_turn

#: A decoded segment: a PIL image, a waveform ``[T]``, or ``None`` (text).
Decoded = object


class ChatModel(Protocol):
    """What a chat session uses of its model: :class:`~aromni.inference.omni.OmniModel` is one (it is named
    by this protocol rather than imported, since ``OmniModel.chat`` builds sessions)."""

    layout: VocabLayout
    style: PromptStyle
    engine: Engine
    text: Tokenizer | None
    image: ImageTokenizer | None
    speech: SpeechTokenizer | None

    def options(self, task: str | Task, overrides: Mapping[str, object] | None = None,
                **shortcuts: object) -> DecodeOptions: ...

    def encode(self, conv: Conversation) -> list[int]: ...

    def check_text(self, text: object, what: str = "text", context: int | None = None, *,
                   allow_empty: bool = False) -> str: ...

    def decode_segments(self, segments: Sequence[Segment]) -> list[tuple[Segment, Decoded]]: ...

_DEFAULT = object()
_TURN_FIELDS = {"text", "audio", "images", "sample_rate", "append_text", "audio_chunks", "seed"}


def _image_list(images: ImageInput | Sequence[ImageInput] | None) -> list[ImageInput]:
    """``images`` as a list: one image (a path, a PIL image, a tensor) or a list/tuple of them."""
    if images is None:
        return []
    if isinstance(images, (str, bytes, os.PathLike, torch.Tensor, np.ndarray)) or hasattr(images, "mode"):
        return [images]
    if not isinstance(images, (list, tuple)):
        raise InputError(f"images must be a list of images (paths, PIL images or tensors), got "
                         f"{type(images).__name__}")
    return list(images)


class HistoryTruncatedWarning(UserWarning):
    """The chat history did not fit the context; the oldest turns were dropped."""


@dataclass
class ChatReply:
    """One assistant turn.

    Attributes:
        tokens: generated ids (stop token included).
        segments: typed segments of the reply.
        decoded: ``(segment, decoded)`` per segment: a PIL image, a waveform ``[T]`` or ``None`` (text).
        text: the text segments joined.
        stop_reason: why generation stopped.
        dropped_turns: history turns dropped to fit this turn.
        prompt_tokens: length of the prompt.
    """

    tokens: list[int]
    segments: list[Segment]
    decoded: list[tuple[Segment, Decoded]]
    text: str
    stop_reason: str | None
    dropped_turns: int = 0
    prompt_tokens: int = 0

    @property
    def images(self) -> list[Decoded]:
        return [d for s, d in self.decoded if isinstance(s, ImageSegment) and d is not None]

    @property
    def audio(self) -> list[torch.Tensor]:
        return [d for s, d in self.decoded if isinstance(s, SpeechSegment) and d is not None]


@dataclass
class ChatEvent:
    """Streamed output: ``kind`` is ``"text"`` (a delta str), ``"image"`` (PIL), ``"speech"`` (a whole decoded
    segment ``[T]``), ``"audio_chunk"`` (an :class:`~aromni.inference.streaming.AudioChunk`) or ``"reply"``
    (the final :class:`ChatReply`)."""

    kind: str
    value: Decoded
    segment: Segment | None = field(default=None, repr=False)


class ChatSession:
    """A conversation with an :class:`~aromni.inference.omni.OmniModel`.

    Args:
        model: the loaded model.
        options: decoding options (``model.options("chat")`` by default).
        append_text: instruction appended to every user turn (official default
            :data:`~aromni.vocab.templates.OFFICIAL_CHAT_APPEND`; ``""`` for none).
        reserve_tokens: room kept for the reply when trimming history (default: ``max_new_tokens`` capped at
            a quarter of the context, but at least one image when images are enabled: 1026 for the 7B model).
    """

    def __init__(self, model: ChatModel, options: DecodeOptions | None = None, *,
                 append_text: str | None = OFFICIAL_CHAT_APPEND, reserve_tokens: int | None = None):
        self.model = model
        if options is not None and not isinstance(options, DecodeOptions):
            raise ConfigError(f"chat options must be a DecodeOptions, got {type(options).__name__}",
                              "pass a mapping of overrides to model.chat(options=...) instead")
        self.options = options or model.options(CHAT)
        if append_text is not None and not isinstance(append_text, str):
            raise InputError(f"append_text must be a string (or None), got {type(append_text).__name__}")
        self.append_text = append_text
        self.context = min(self.options.max_seq_len or model.engine.max_seq_len, model.engine.max_seq_len)
        if reserve_tokens is None:
            reserve_tokens = min(self.options.max_new_tokens, self.context // 4)
            if self.options.allow_image and model.engine.image_tokens:
                reserve_tokens = max(reserve_tokens, model.engine.image_tokens + 2)
        if (isinstance(reserve_tokens, bool) or not isinstance(reserve_tokens, numbers.Integral)
                or reserve_tokens < 0):
            raise ConfigError(f"reserve_tokens must be an integer >= 0, got {reserve_tokens!r}")
        self.reserve_tokens = int(reserve_tokens)
        self.history: list[list[int]] = []

    def reset(self) -> None:
        self.history = []

    # ------------------------------------------------------------------------------------------ prompts
    def user_turn_ids(self, *, text: str | None = None, audio: AudioInput | None = None,
                      images: ImageInput | Sequence[ImageInput] = (), sample_rate: int | None = None,
                      append_text: object = _DEFAULT) -> list[int]:
        """Ids of one user turn up to and including the assistant prefix (no ``<bos>`` in the official style).

        ``audio``: a file path or a waveform with ``sample_rate`` (see :meth:`OmniModel.asr`); audio longer than
        the context holds (with this turn's text and images, and the history dropped) is refused before it is
        encoded, with how many seconds fit. ``images``: one image or a list (paths, PIL images, tensors)."""
        m = self.model
        append = self.append_text if append_text is _DEFAULT else append_text
        if text is None and audio is None:
            raise InputError("a chat turn needs text or audio")
        if text is not None:
            m.check_text(text, "chat text", self.context)
        if append:
            m.check_text(append, "append_text", self.context)
        elif append is not None and not isinstance(append, str):
            raise InputError(f"append_text must be a string (or None), got {type(append).__name__}")
        image_codes = [media.image_to_codes(m.image, im) for im in _image_list(images)]
        speech = None
        if audio is not None:
            wav = media.waveform(m.speech, audio, sample_rate)
            head = 0 if m.style.bos_every_turn else 1
            max_frames = self.context - 1 - head - len(self._turn_ids([], text, image_codes, append))
            if media.frames_of(m.speech, wav) > max_frames:
                where = "a chat turn" + (" with this text and these images" if text or image_codes else "")
                raise media.audio_too_long(m.speech, wav, max_frames, self.context, where)
            speech = media.encode_waveform(m.speech, wav)
        return self._turn_ids(speech, text, image_codes, append)

    def _turn_ids(self, speech: list[int] | None, text: str | None, image_codes: list[list[int]],
                  append: str | None) -> list[int]:
        turn = official_chat_turn(speech=speech, text=text if speech is None else None, images=image_codes,
                                  append_text=append)
        if speech is not None and text is not None:  # audio and typed text in one turn: speech first, then text
            turn.segments.insert(len(image_codes) + 1, TextSegment(text))
        ids = self.model.encode(Conversation([turn], chat=True))
        return ids if self.model.style.bos_every_turn else ids[1:]

    def build_prompt(self, turn_ids: list[int]) -> tuple[list[int], int]:
        """``(prompt ids, turns dropped)`` for a new user turn, trimming the oldest history to fit."""
        head = [] if self.model.style.bos_every_turn else [self.model.layout.bos]
        dropped = 0

        def size() -> int:
            return len(head) + sum(len(t) for t in self.history[dropped:]) + len(turn_ids)

        while dropped < len(self.history) and size() + self.reserve_tokens > self.context:
            dropped += 1
        if size() >= self.context:
            raise InputError(f"this turn has {len(turn_ids)} tokens and does not fit the context of "
                             f"{self.context} tokens", "send shorter audio, fewer images or less text")
        if dropped:
            warnings.warn(f"chat history too long for the {self.context}-token context: dropped the oldest "
                          f"{dropped} of {len(self.history)} turn(s)", HistoryTruncatedWarning, stacklevel=3)
            self.history = self.history[dropped:]
        prompt = head + [t for turn in self.history for t in turn] + turn_ids
        return prompt, dropped

    def _remember(self, turn_ids: list[int], reply: list[int]) -> None:
        L = self.model.layout
        body = list(reply)
        while body and body[-1] == L.eos:
            body.pop()
        if not body or body[-1] != L.eom:
            body.append(L.eom)
        self.history.append(turn_ids + body)

    # ------------------------------------------------------------------------------------------ turns
    def stream(self, *, text: str | None = None, audio: AudioInput | None = None,
               images: ImageInput | Sequence[ImageInput] = (), sample_rate: int | None = None,
               append_text: object = _DEFAULT, audio_chunks: bool = False, seed: int | None = None,
               **unknown: object) -> Iterator[ChatEvent]:
        """Send a user turn and yield :class:`ChatEvent` s as the reply is generated; the last is ``"reply"``."""
        if unknown:
            raise InputError(f"unknown chat turn fields {sorted(unknown)}",
                             f"known: {', '.join(sorted(_TURN_FIELDS))}")
        turn_ids = self.user_turn_ids(text=text, audio=audio, images=images, sample_rate=sample_rate,
                                      append_text=append_text)
        prompt, dropped = self.build_prompt(turn_ids)
        opts = self.options if seed is None else self.options.replace(seed=seed)
        gen = self.model.engine.generate([prompt], opts)
        m = self.model
        asm = SegmentAssembler(m.layout, m.text, image_tokens=m.engine.image_tokens)
        inc = IncrementalText(m.text) if m.text is not None else None
        streamer = SpeechStreamer(gen, m.speech, m.layout) if audio_chunks and m.speech is not None else None
        decoded: list[tuple[Segment, Decoded]] = []
        for step in gen:
            tok = step.tokens[0]
            if tok < 0:
                continue
            outside = asm.in_span is None
            is_text = int(m.layout.kind_of([tok])[0]) == 1
            if inc is not None and not (outside and is_text):
                # The text run ends here (a span starts or a control token arrives): flush held-back bytes so
                # the streamed deltas equal the per-segment decodes exactly.
                delta = inc.finish()
                if delta:
                    yield ChatEvent("text", delta)
            for seg in asm.push(tok):
                decoded.append(self._decode(seg))
                yield from self._segment_events(*decoded[-1])
            if inc is not None and outside and asm.in_span is None and is_text:
                delta = inc.push([tok])
                if delta:
                    yield ChatEvent("text", delta)
            if streamer is not None:
                for chunk in streamer.feed(step):
                    yield ChatEvent("audio_chunk", chunk)
        if inc is not None and (delta := inc.finish()):
            yield ChatEvent("text", delta)
        for seg in asm.finish():
            decoded.append(self._decode(seg))
            yield from self._segment_events(*decoded[-1])
        if streamer is not None:
            for chunk in streamer.finish():
                yield ChatEvent("audio_chunk", chunk)
        g = gen.results[0]
        self._remember(turn_ids, g.tokens)
        segments = [s for s, _ in decoded]
        text_out = "".join(s.text for s in segments if isinstance(s, TextSegment)).strip()
        yield ChatEvent("reply", ChatReply(g.tokens, segments, decoded, text_out, g.stop_reason, dropped, len(prompt)))

    def send(self, **kwargs: object) -> ChatReply:
        """Send a user turn (``text=``, ``audio=``, ``images=``, ``sample_rate=``, ``append_text=``, ``seed=``)
        and return the whole reply."""
        unknown = sorted(set(kwargs) - _TURN_FIELDS)
        if unknown:
            raise InputError(f"unknown chat turn fields {unknown}", f"known: {', '.join(sorted(_TURN_FIELDS))}")
        reply = None
        for ev in self.stream(**kwargs):
            if ev.kind == "reply":
                reply = ev.value
        assert reply is not None
        return reply

    def _decode(self, seg: Segment) -> tuple[Segment, Decoded]:
        return self.model.decode_segments([seg])[0]

    @staticmethod
    def _segment_events(seg: Segment, value: Decoded) -> Iterator[ChatEvent]:
        if value is None:
            return
        kind = "image" if isinstance(seg, ImageSegment) else "speech"
        yield ChatEvent(kind, value, seg)
