"""The typed pieces of a turn (text, image codes, speech codes) and the text codec that turns text into ids:
shared by the conversation encoder and the segmenter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, Union

import numpy as np


class TextCodec(Protocol):
    """What the sequence format needs of a text tokenizer (:class:`aromni.tokenizers.text.TextTokenizer` is one)."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


@dataclass
class TextSegment:
    """Text. ``ids`` caches its token ids when they come from generation (``text`` may be empty then)."""

    text: str = ""
    ids: list[int] | None = None
    type: str = field(default="text", init=False, repr=False)


@dataclass
class ImageSegment:
    """An image as codebook indices ``[h*w]`` (row-major). ``complete`` is False for truncated output."""

    codes: Sequence[int] | np.ndarray
    complete: bool = True
    type: str = field(default="image", init=False, repr=False)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ImageSegment) and self.complete == other.complete
                and np.array_equal(np.asarray(self.codes), np.asarray(other.codes)))


@dataclass
class SpeechSegment:
    """Speech as codec codes ``[F]``. ``transcript`` is metadata only (never encoded)."""

    codes: Sequence[int] | np.ndarray
    complete: bool = True
    transcript: str | None = None
    type: str = field(default="speech", init=False, repr=False)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, SpeechSegment) and self.complete == other.complete
                and np.array_equal(np.asarray(self.codes), np.asarray(other.codes)))


Segment = Union[TextSegment, ImageSegment, SpeechSegment]
