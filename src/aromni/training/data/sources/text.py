"""``text`` source: plain text documents -> ``<bos> text <eos>`` samples (task ``text``, group ``text``).

Inputs: ``.txt`` files (one document per non-blank line, or the whole file with ``per: file``) and ``.jsonl``
files (the string field ``field``, default ``text``). A document longer than ``max_len`` is dropped
(``too_long``) or, with ``long: split``, cut into consecutive windows; only the last window ends with
``<eos>`` (the others stop mid-text, as the document does).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from aromni.errors import ConfigError
from aromni.training.data.shards import Sample
from aromni.training.data.sources.base import (
    BadRecord,
    Chunk,
    EncodeContext,
    Item,
    Source,
    item_chunks,
    json_items,
    line_chunks,
    read_lines,
)
from aromni.utils.io import JSONValue
from aromni.vocab.conversation import EncodedConversation, Segment, Span, TextSegment, encode_segment
from aromni.vocab.layout import VocabLayout
from aromni.vocab.segments import TextCodec


def encode_document(
    segments: Sequence[Segment], layout: VocabLayout, tokenizer: TextCodec, *, end: bool = True
) -> EncodedConversation:
    """A document with no dialogue framing: ``<bos> segments… [<eos>]``.

    Everything after ``<bos>`` is model output (response mask True), as in a single assistant turn; spans
    carry role ``assistant`` and turn 0. Segments are encoded with
    :func:`~aromni.vocab.conversation.encode_segment`, so images and speech get their markers exactly as
    inside a conversation.
    """
    ids: list[int] = [layout.bos]
    spans: list[Span] = []
    for seg in segments:
        pre, content, post = encode_segment(seg, layout, tokenizer)
        ids.extend(pre)
        if content:
            spans.append(Span(seg.type, len(ids), len(ids) + len(content), "assistant", 0))
        ids.extend(content)
        ids.extend(post)
    if end:
        ids.append(layout.eos)
    arr = np.asarray(ids, dtype=np.int64)
    resp = np.ones(arr.size, dtype=bool)
    resp[0] = False
    return EncodedConversation(arr, resp, np.zeros(arr.size, dtype=np.int16), spans)


class TextSource(Source):
    type_name = "text"
    options = ("field", "per", "long")
    default_group = "text"

    def __init__(self, index: int, cfg: Mapping[str, JSONValue], base: Path):
        super().__init__(index, cfg, base)
        self.field = self.cfg.get("field", "text")
        self.per = self.cfg.get("per", "line")
        self.long = self.cfg.get("long", "drop")
        if self.per not in ("line", "file"):
            raise ConfigError(f"{self.where}: per must be 'line' or 'file', got {self.per!r}")
        if self.long not in ("drop", "split"):
            raise ConfigError(f"{self.where}: long must be 'drop' or 'split', got {self.long!r}")

    def input_files(self) -> list[Path]:
        return self.expand((".txt", ".jsonl"))

    def plan(self, chunk_size: int) -> list[Chunk]:
        files = self.input_files()
        if self.per == "file":
            return item_chunks(self, [str(f) for f in files], chunk_size)
        return line_chunks(self, files, chunk_size)

    def read(self, chunk: Chunk) -> Iterator[Item]:
        if chunk.kind == "items":
            for path in chunk.items:
                try:
                    yield Item(path, open(path, encoding="utf-8").read())
                except UnicodeDecodeError:
                    yield Item(path, error=BadRecord("bad_text", f"{path}: not UTF-8 text"))
            return
        if chunk.path.endswith(".jsonl"):
            for item in json_items(chunk):
                if item.error is None:
                    value = item.payload.get(self.field)
                    if not isinstance(value, str):
                        item = Item(
                            item.where,
                            error=BadRecord("bad_record", f"{item.where}: no string field {self.field!r}"),
                        )
                    else:
                        item = Item(item.where, value)
                yield item
            return
        for where, line in read_lines(chunk):
            if line is None:
                yield Item(where, error=BadRecord("bad_text", f"{where}: not UTF-8 text"))
            else:
                yield Item(where, line)

    def encode(self, item: Item, ctx: EncodeContext) -> list[tuple[str, Sample]]:
        text = item.payload.strip()
        if not text:
            raise BadRecord("empty_text", f"{item.where}: empty text")
        content = ctx.text.encode(text)
        split = self.split or "train"
        room = ctx.max_len - 2  # <bos> … <eos>
        if len(content) <= room or self.long == "drop":
            enc = encode_document([TextSegment(ids=content)], ctx.layout, ctx.text)
            return [(split, Sample.from_encoded(enc, "text", self.group, item.where))]
        pieces = [content[i : i + room] for i in range(0, len(content), room)]
        out = []
        for k, piece in enumerate(pieces):
            enc = encode_document([TextSegment(ids=piece)], ctx.layout, ctx.text, end=k == len(pieces) - 1)
            out.append((split, Sample.from_encoded(enc, "text", self.group, f"{item.where}#{k}")))
        return out
