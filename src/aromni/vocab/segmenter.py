"""Split token ids (e.g. a generated reply) back into typed segments.

Rules (a superset of the official ``split_segments``, ``official-formats.md`` §C.2):

* ``<boi>`` image codes ``<eoi>`` -> :class:`ImageSegment`; ``<boa>`` speech codes ``<eoa>`` -> :class:`SpeechSegment`;
  a bare run of speech codes (no ``<boa>``) is speech too, as the official decoder accepts it;
* a span cut short — the ids end, or a token of another kind arrives before the end marker, or an image has
  fewer codes than expected — yields a segment with ``complete=False`` instead of an error;
* other text ids form :class:`TextSegment` s (decoded when a tokenizer is given);
* ``stop_at`` tokens (by default ``<eos>`` and ``<eom>``) end the parse; other control tokens are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aromni.vocab.segments import ImageSegment, Segment, SpeechSegment, TextCodec, TextSegment
from aromni.vocab.layout import VocabLayout

_TEXT, _IMAGE, _SPEECH = 1, 2, 3


@dataclass
class SplitResult:
    """Segments parsed from ids.

    Attributes:
        segments: in order.
        terminated_by: the stop token id that ended the parse, or ``None`` if the ids ran out.
        consumed: number of ids read, including the stop token.
    """

    segments: list[Segment]
    terminated_by: int | None
    consumed: int


def split_segments(ids: Sequence[int] | np.ndarray, layout: VocabLayout, tokenizer: TextCodec | None = None, *,
                   stop_at: Sequence[int] | None = None, image_tokens: int | None = None) -> SplitResult:
    """Parse ``ids`` into segments.

    Args:
        ids: token ids ``[T]``.
        layout: the vocabulary layout.
        tokenizer: text tokenizer used to decode text segments (otherwise only their ids are kept).
        stop_at: ids that end the parse (default ``<eos>``, ``<eom>``).
        image_tokens: expected codes per image; an image with fewer is marked incomplete.
    """
    ids = [int(i) for i in ids]
    kinds = layout.kind_of(ids) if ids else np.zeros(0, dtype=np.int8)
    stops = set((layout.eos, layout.eom) if stop_at is None else stop_at)
    segments: list[Segment] = []
    text: list[int] = []

    def flush_text() -> None:
        if text:
            segments.append(TextSegment(tokenizer.decode(text) if tokenizer is not None else "", ids=list(text)))
            text.clear()

    i, n = 0, len(ids)
    while i < n:
        tok = ids[i]
        if tok in stops:
            flush_text()
            return SplitResult(segments, tok, i + 1)
        if tok in (layout.boi, layout.boa) or kinds[i] == _SPEECH:
            flush_text()
            is_image = tok == layout.boi
            code_kind, end = (_IMAGE, layout.eoi) if is_image else (_SPEECH, layout.eoa)
            j = i + 1 if tok in (layout.boi, layout.boa) else i
            start = j
            while j < n and kinds[j] == code_kind:
                j += 1
            closed = j < n and ids[j] == end
            codes = layout.image.to_codes(ids[start:j]) if is_image else layout.speech.to_codes(ids[start:j])
            complete = closed and tok in (layout.boi, layout.boa)
            if is_image and image_tokens is not None and len(codes) != image_tokens:
                complete = False
            segments.append(ImageSegment(codes, complete) if is_image else SpeechSegment(codes, complete))
            i = j + 1 if closed else j
            continue
        if kinds[i] == _TEXT:
            text.append(tok)
        # Anything else (stray markers, bos/pad/eoh, reserved, image codes outside <boi>) is skipped.
        i += 1
    flush_text()
    return SplitResult(segments, None, n)
