"""Turn the engine's token steps into segments and text deltas as they arrive.

:class:`SegmentAssembler` is the incremental form of :func:`aromni.vocab.segmenter.split_segments` (same rules,
same result on the same ids): push one token at a time and get each :class:`TextSegment`,
:class:`ImageSegment` or :class:`SpeechSegment` the moment it is complete. :func:`iter_segments` applies it to
every row of a :class:`~aromni.inference.engine.GenerationStream`; :class:`IncrementalText` turns growing text ids
into printable deltas (holding back bytes of a character that is not complete yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from aromni.inference.engine import NO_TOKEN, Step
from aromni.tokenizers.base import Tokenizer
from aromni.vocab.conversation import ImageSegment, Segment, SpeechSegment, TextSegment
from aromni.vocab.layout import VocabLayout

_TEXT, _IMAGE, _SPEECH = 1, 2, 3


class SegmentAssembler:
    """Incremental segmenter for one row.

    Args:
        layout: vocabulary layout.
        tokenizer: decodes text segments (``None``: keep ids only).
        stop_at: ids that end the parse (default ``<eos>``, ``<eom>``).
        image_tokens: expected codes per image (fewer marks the image incomplete).
    """

    def __init__(self, layout: VocabLayout, tokenizer: Tokenizer | None = None, *, stop_at: Sequence[int] | None = None,
                 image_tokens: int | None = None):
        self.layout, self.tokenizer, self.image_tokens = layout, tokenizer, image_tokens
        self.stops = set((layout.eos, layout.eom) if stop_at is None else stop_at)
        self.terminated_by: int | None = None
        self._text: list[int] = []
        self._span: str | None = None  # "image" | "speech" while inside a span
        self._marker = False
        self._codes: list[int] = []

    @property
    def in_span(self) -> str | None:
        return self._span

    def push(self, tok: int) -> list[Segment]:
        """Feed one id; return the segments it completed (usually none)."""
        if self.terminated_by is not None:
            return []
        kind = int(self.layout.kind_of([tok])[0])
        if self._span is not None:
            code_kind = _IMAGE if self._span == "image" else _SPEECH
            if kind == code_kind:
                self._codes.append(tok)
                return []
            closed = tok == (self.layout.eoi if self._span == "image" else self.layout.eoa)
            seg = self._close(closed)
            return [seg] if closed else [seg, *self._push_outside(tok, kind)]
        return self._push_outside(tok, kind)

    def _push_outside(self, tok: int, kind: int) -> list[Segment]:
        L = self.layout
        if tok in self.stops:
            self.terminated_by = tok
            return self._flush_text()
        if tok in (L.boi, L.boa) or kind == _SPEECH:
            out = self._flush_text()
            self._span = "image" if tok == L.boi else "speech"
            self._marker = tok in (L.boi, L.boa)
            self._codes = [] if self._marker else [tok]
            return out
        if kind == _TEXT:
            self._text.append(tok)
        return []  # other control tokens are skipped, as split_segments does

    def _close(self, closed: bool) -> Segment:
        complete = closed and self._marker
        if self._span == "image":
            codes = self.layout.image.to_codes(self._codes)
            if self.image_tokens is not None and len(codes) != self.image_tokens:
                complete = False
            seg: Segment = ImageSegment(codes, complete)
        else:
            seg = SpeechSegment(self.layout.speech.to_codes(self._codes), complete)
        self._span, self._codes = None, []
        return seg

    def _flush_text(self) -> list[Segment]:
        if not self._text:
            return []
        ids, self._text = self._text, []
        return [TextSegment(self.tokenizer.decode(ids) if self.tokenizer is not None else "", ids=ids)]

    def finish(self) -> list[Segment]:
        """The segments still open when the ids end (spans come back incomplete)."""
        out = [self._close(False)] if self._span is not None else []
        return out + self._flush_text()

    def resume_from(self, prompt: Sequence[int]) -> None:
        """Start inside the span the prompt leaves open (e.g. a T2I prompt ending in ``<boi>``)."""
        L = self.layout
        for j in range(len(prompt) - 1, -1, -1):
            if prompt[j] in (L.eoi, L.eoa):
                return
            if prompt[j] in (L.boi, L.boa):
                for t in prompt[j:]:
                    self.push(int(t))
                return

    def feed(self, ids: Iterable[int]) -> list[Segment]:
        """Push many ids and finish: the whole parse (equals ``split_segments(ids).segments``)."""
        out: list[Segment] = []
        for t in ids:
            out += self.push(int(t))
        return out + self.finish()


def iter_segments(steps: Iterable[Step], layout: VocabLayout, tokenizer: Tokenizer | None = None, *, n_rows: int | None = None,
                  image_tokens: int | None = None) -> Iterator[tuple[int, Segment]]:
    """Yield ``(row, segment)`` as each segment of each row completes, then the rows' remaining segments."""
    asm: list[SegmentAssembler] = []
    for step in steps:
        if not asm:
            asm = [SegmentAssembler(layout, tokenizer, image_tokens=image_tokens)
                   for _ in range(n_rows or len(step.tokens))]
        for row, tok in enumerate(step.tokens):
            if tok != NO_TOKEN:
                for seg in asm[row].push(tok):
                    yield row, seg
    for row, a in enumerate(asm):
        for seg in a.finish():
            yield row, seg


class IncrementalText:
    """Growing text ids -> printable deltas. ``push(ids)`` returns the new text since the last call."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, ids: Iterable[int]) -> str:
        self.ids.extend(int(i) for i in ids)
        text = self.tokenizer.decode(self.ids)
        # A multi-byte character split across tokens decodes to U+FFFD until its last byte arrives: hold it back.
        stable = text.rstrip("\ufffd")
        if not stable.startswith(self.emitted):
            return ""
        delta, self.emitted = stable[len(self.emitted):], stable
        return delta

    def finish(self) -> str:
        """End the text run: return what was held back (the run's whole decode minus what was emitted) and reset.

        Afterwards the concatenated deltas equal ``tokenizer.decode(run_ids)`` exactly.
        """
        text = self.tokenizer.decode(self.ids) if self.ids else ""
        delta = text[len(self.emitted):] if text.startswith(self.emitted) else ""
        self.reset()
        return delta

    def reset(self) -> None:
        self.ids, self.emitted = [], ""
