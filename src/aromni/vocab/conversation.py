"""The interleaved sequence format: typed conversations <-> token ids, with loss masks.

A :class:`Conversation` is a list of :class:`Turn` s (``"user"`` or ``"assistant"``), each a list of segments:
:class:`TextSegment`, :class:`ImageSegment` (image codes), :class:`SpeechSegment` (speech codes). A
:class:`PromptStyle` frames the turns. Two styles ship:

* :data:`OFFICIAL` — the strings of the official AR-Omni code (``official-formats.md`` §C.2): one ``<bos>``,
  ``USER:`` … ``<eoh>`` ``GPT:``, history turns joined with ``<eom>``; task templates in
  :mod:`aromni.vocab.templates` reproduce its prompts id for id;
* :data:`PAPER` — the paper's Table 10: ``<bos> USER: … <eoh> ASSISTANT: …`` with ``<bos>`` on every turn.

Framing of a user turn: ``[<bos>] enc(user_prefix) segments… <eoh> enc(assistant_prefix)``; an assistant turn:
``segments… <eos>`` (single-turn) or ``<eom>`` (chat). Text segments are tokenized one by one and concatenated,
as the official code does. Images are ``<boi> codes… <eoi>``, speech ``<boa> codes… <eoa>``.

:func:`encode_conversation` returns the ids plus per-position masks (which positions are assistant response,
their turn, and typed spans) used by the training losses; a conversation that ends with a user turn encodes to
a generation prompt ending in the assistant prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from aromni.errors import InputError
from aromni.vocab.layout import VocabLayout
from aromni.vocab.segmenter import split_segments
from aromni.vocab.segments import ImageSegment, Segment, SpeechSegment, TextCodec, TextSegment

Role = Literal["user", "assistant"]


@dataclass
class Turn:
    """One message. ``assistant_prefix`` overrides the style's prefix after this *user* turn's ``<eoh>``."""

    role: Role
    segments: list[Segment]
    assistant_prefix: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.role, str) or self.role not in ("user", "assistant"):
            raise InputError(f"turn role must be 'user' or 'assistant', got {self.role!r}")
        if not isinstance(self.segments, (list, tuple)):
            raise InputError(f"a turn's segments must be a list, got {type(self.segments).__name__}",
                             "e.g. Turn('user', [TextSegment('hi')])")
        self.segments = list(self.segments)
        if self.assistant_prefix is not None and not isinstance(self.assistant_prefix, str):
            raise InputError(f"assistant_prefix must be a string, got {type(self.assistant_prefix).__name__}")
        for s in self.segments:
            if not isinstance(s, (TextSegment, ImageSegment, SpeechSegment)):
                raise InputError(f"unknown segment {s!r}", "use TextSegment, ImageSegment or SpeechSegment")


@dataclass
class Conversation:
    """Alternating user/assistant turns (starting with a user turn).

    Attributes:
        turns: the messages.
        chat: end assistant turns with ``<eom>`` (multi-turn chat) instead of ``<eos>``; ``None`` decides by
            the number of user turns (chat when more than one).
        task: optional task name (e.g. ``"asr"``), carried into training shards.
    """

    turns: list[Turn]
    chat: bool | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.turns, (list, tuple)):
            raise InputError(f"a conversation's turns must be a list of Turn, got {type(self.turns).__name__}")
        self.turns = list(self.turns)
        if not self.turns:
            raise InputError("a conversation needs at least one turn")
        for i, t in enumerate(self.turns):
            if not isinstance(t, Turn):
                raise InputError(f"turn {i} is a {type(t).__name__}, not a Turn",
                                 "e.g. Turn('user', [TextSegment('hi')])")
            expected = "user" if i % 2 == 0 else "assistant"
            if t.role != expected:
                raise InputError(f"turn {i} is {t.role!r}, expected {expected!r}",
                                 "turns alternate user, assistant, user, ...")

    @property
    def is_chat(self) -> bool:
        if self.chat is not None:
            return self.chat
        return sum(t.role == "user" for t in self.turns) > 1


@dataclass(frozen=True)
class PromptStyle:
    """How turns are framed. See the module docstring."""

    name: str
    user_prefix: str = "USER:"
    assistant_prefix: str = "GPT:"
    bos_every_turn: bool = False


OFFICIAL = PromptStyle("official", "USER:", "GPT:", bos_every_turn=False)
PAPER = PromptStyle("paper", "USER:", "ASSISTANT:", bos_every_turn=True)
STYLES = {s.name: s for s in (OFFICIAL, PAPER)}


def get_style(style: str | PromptStyle) -> PromptStyle:
    if isinstance(style, PromptStyle):
        return style
    if style not in STYLES:
        raise InputError(f"unknown prompt style {style!r}", f"one of {', '.join(STYLES)}")
    return STYLES[style]


@dataclass(frozen=True)
class Span:
    """A run of content tokens ``[start, stop)`` (modality markers excluded)."""

    kind: str  # "text" | "image" | "speech"
    start: int
    stop: int
    role: Role
    turn: int


@dataclass
class EncodedConversation:
    """Token ids of a conversation and what each position is.

    Attributes:
        ids: ``[T]`` int64 token ids.
        is_response: ``[T]`` bool, True where the token was produced by the assistant (the SFT targets: response
            content, its modality markers and the turn terminator; not the assistant prefix).
        turn: ``[T]`` int16 turn index of every position.
        spans: typed content spans in order.
    """

    ids: np.ndarray
    is_response: np.ndarray
    turn: np.ndarray
    spans: list[Span]

    def __len__(self) -> int:
        return int(self.ids.size)

    def spans_of(self, kind: str, role: str | None = None) -> list[Span]:
        return [s for s in self.spans if s.kind == kind and (role is None or s.role == role)]

    @property
    def response_start(self) -> int:
        """First response position (``len`` when there is none, i.e. a generation prompt)."""
        hits = np.nonzero(self.is_response)[0]
        return int(hits[0]) if hits.size else len(self)


class _Builder:
    def __init__(self) -> None:
        self.ids: list[int] = []
        self.resp: list[bool] = []
        self.turn: list[int] = []
        self.spans: list[Span] = []

    def add(self, ids: Sequence[int], response: bool, turn: int, kind: str | None = None, role: Role = "user") -> None:
        start = len(self.ids)
        self.ids.extend(int(i) for i in ids)
        self.resp.extend([response] * len(ids))
        self.turn.extend([turn] * len(ids))
        if kind is not None and len(ids):
            self.spans.append(Span(kind, start, len(self.ids), role, turn))


def encode_segment(seg: Segment, layout: VocabLayout, tokenizer: TextCodec) -> tuple[list[int], list[int], list[int]]:
    """Return ``(prefix_markers, content_ids, suffix_markers)`` for one segment."""
    if isinstance(seg, TextSegment):
        if seg.ids is not None and not seg.text:
            ids = _int_array(seg.ids, "text segment ids")
            if ids.size and (ids.min() < 0 or ids.max() >= layout.vocab_size):
                raise InputError(f"text segment id out of range [0, {layout.vocab_size})")
            return [], ids.tolist(), []
        return [], tokenizer.encode(seg.text), []
    if isinstance(seg, ImageSegment):
        return [layout.boi], list(layout.image.to_ids(_int_array(seg.codes, "image codes"))), [layout.eoi]
    return [layout.boa], list(layout.speech.to_ids(_int_array(seg.codes, "speech codes"))), [layout.eoa]


def _int_array(values: Any, what: str) -> np.ndarray:
    """A 1-D sequence of integers (integer-valued floats too) -> int64 array; :class:`InputError` otherwise."""
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):
        arr = np.asarray([None], dtype=object)
    if arr.ndim == 1 and arr.size == 0:
        return arr.astype(np.int64)
    ok = arr.ndim == 1 and (arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and bool(np.all(np.isfinite(arr)))
                                                            and bool(np.all(arr == np.round(arr)))))
    if not ok:
        raise InputError(f"{what} must be a 1-D list of integers, got {arr.dtype} {tuple(arr.shape)}")
    return arr.astype(np.int64)


def encode_conversation(conv: Conversation, layout: VocabLayout, tokenizer: TextCodec,
                        style: str | PromptStyle = OFFICIAL) -> EncodedConversation:
    """Conversation -> :class:`EncodedConversation` (ids + masks). See the module docstring for the framing."""
    style = get_style(style)
    b = _Builder()
    end = layout.eom if conv.is_chat else layout.eos
    for t, turn in enumerate(conv.turns):
        is_asst = turn.role == "assistant"
        if not is_asst:
            if t == 0 or style.bos_every_turn:
                b.add([layout.bos], False, t)
            b.add(tokenizer.encode(style.user_prefix), False, t)
        for seg in turn.segments:
            pre, content, post = encode_segment(seg, layout, tokenizer)
            b.add(pre, is_asst, t)
            b.add(content, is_asst, t, kind=seg.type, role=turn.role)
            # An incomplete segment (truncated generation) has no end marker.
            if getattr(seg, "complete", True):
                b.add(post, is_asst, t)
        if is_asst:
            b.add([end], True, t)
        else:
            b.add([layout.eoh], False, t)
            prefix = style.assistant_prefix if turn.assistant_prefix is None else turn.assistant_prefix
            b.add(tokenizer.encode(prefix), False, t)
    return EncodedConversation(
        ids=np.asarray(b.ids, dtype=np.int64),
        is_response=np.asarray(b.resp, dtype=bool),
        turn=np.asarray(b.turn, dtype=np.int16),
        spans=b.spans,
    )


def decode_conversation(ids: Sequence[int] | np.ndarray, layout: VocabLayout, tokenizer: TextCodec,
                        style: str | PromptStyle = OFFICIAL) -> Conversation:
    """Token ids of a whole conversation -> :class:`Conversation` (inverse of :func:`encode_conversation`).

    Adjacent text segments come back merged (their token boundaries are not recoverable). Raises
    :class:`InputError` if the ids do not follow the style's framing.
    """
    style = get_style(style)
    ids = [int(i) for i in ids]
    user_prefix = tokenizer.encode(style.user_prefix)
    turns: list[Turn] = []
    chat: bool | None = None
    i = 0

    def expect(seq: list[int], what: str) -> None:
        nonlocal i
        if ids[i:i + len(seq)] != seq:
            raise InputError(f"position {i}: expected {what}", "the ids do not follow the prompt style")
        i += len(seq)

    while i < len(ids):
        if not turns or style.bos_every_turn:
            expect([layout.bos], "<bos>")
        expect(user_prefix, repr(style.user_prefix))
        try:
            eoh = ids.index(layout.eoh, i)
        except ValueError:
            raise InputError(f"position {i}: user turn without <eoh>") from None
        turns.append(Turn("user", split_segments(ids[i:eoh], layout, tokenizer).segments))
        i = eoh + 1
        prefix_str = _match_prefix(ids, i, tokenizer, style)
        i += len(tokenizer.encode(prefix_str))
        if prefix_str != style.assistant_prefix:
            turns[-1].assistant_prefix = prefix_str
        if i >= len(ids):
            break
        out = split_segments(ids[i:], layout, tokenizer, stop_at=(layout.eos, layout.eom))
        turns.append(Turn("assistant", out.segments))
        if out.terminated_by is None:
            raise InputError("assistant turn without <eos>/<eom>")
        chat = out.terminated_by == layout.eom
        i += out.consumed
    n_user = sum(t.role == "user" for t in turns)
    return Conversation(turns, chat=None if chat is None or chat == (n_user > 1) else chat)


def _match_prefix(ids: list[int], i: int, tokenizer: TextCodec, style: PromptStyle) -> str:
    # The official T2I prompt uses " GPT:" (leading space); accept any known variant of the prefix.
    for cand in (style.assistant_prefix, " " + style.assistant_prefix):
        enc = tokenizer.encode(cand)
        if ids[i:i + len(enc)] == enc:
            return cand
    raise InputError(f"position {i}: expected the assistant prefix {style.assistant_prefix!r}")
