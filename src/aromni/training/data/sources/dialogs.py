"""``dialogs`` source: multi-turn dialog JSONL (text / image / speech segments per turn) -> SFT-style samples.

One object per line (the toy world's record format, ``aromni.toyworld.records``)::

    {"id": "train-asr-000003", "task": "asr", "split": "train",
     "turns": [{"role": "user", "segments": [{"type": "text", "text": "Transcribe the audio."},
                                             {"type": "speech", "path": "speech/train/000012.wav",
                                              "transcript": "a big red circle"}]},
               {"role": "assistant", "segments": [{"type": "text", "text": "a big red circle"}]}]}

Turns alternate user / assistant starting with the user; an optional ``"chat": true|false`` forces ``<eom>`` /
``<eos>`` endings (default: chat when there is more than one user turn). A record whose only turn is an
assistant turn is a document (``<bos> … <eos>``, see :func:`~.text.encode_document`). Image and speech
segments name a file (``path``) or carry codes already (``codes``). Relative paths start at ``media_root``
when set, else at the JSONL file's directory, else at its parent directory (so a toy world's
``records/<split>.jsonl``, whose paths are relative to the world directory, works as is).

The response mask covers the assistant turns (:func:`~aromni.vocab.conversation.encode_conversation`). The
sample's task is the record's ``task`` (or the config's ``task``, or ``dialog``), its split the config's
``split`` if set, else the record's, else ``train``; its group the config's, else derived from its ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from aromni.errors import AromniError
from aromni.training.data.records import BadRecord, group_of
from aromni.training.data.shards import Sample
from aromni.training.data.sources.base import (
    Chunk,
    EncodeContext,
    Item,
    Source,
    json_items,
    line_chunks,
)
from aromni.training.data.sources.text import encode_document
from aromni.utils.io import JSONValue
from aromni.vocab.conversation import (
    Conversation,
    ImageSegment,
    Segment,
    SpeechSegment,
    TextSegment,
    Turn,
    encode_conversation,
)


class DialogSource(Source):
    type_name = "dialogs"
    options = ("media_root", "task")
    default_group = None

    def __init__(self, index: int, cfg: Mapping[str, JSONValue], base: Path):
        super().__init__(index, cfg, base)
        root = self.cfg.get("media_root")
        self.media_root = None if root is None else self.resolve(str(root))
        self.task = self.cfg.get("task")

    def needs(self) -> set[str]:
        # Which media tokenizers are needed depends on the records; the worker reports a missing one clearly.
        return {"text"}

    def input_files(self) -> list[Path]:
        return self.expand((".jsonl",))

    def plan(self, chunk_size: int) -> list[Chunk]:
        return line_chunks(self, self.input_files(), chunk_size)

    def read(self, chunk: Chunk) -> Iterator[Item]:
        roots = (
            [self.media_root]
            if self.media_root
            else [Path(chunk.path).parent, Path(chunk.path).parent.parent]
        )
        for item in json_items(chunk):
            if item.error is None:
                try:
                    item = Item(item.where, self._parse(item.payload, roots, item.where))
                except BadRecord as e:
                    item = Item(item.where, error=e)
            yield item

    def _path(self, rel: str, roots: list[Path]) -> Path:
        p = Path(rel)
        if p.is_absolute():
            return p
        for root in roots:
            if (root / p).exists():
                return root / p
        return roots[0] / p

    def _parse(self, rec: dict[str, Any], roots: list[Path], where: str) -> dict[str, Any]:
        turns = rec.get("turns")
        if not isinstance(turns, list) or not turns:
            raise BadRecord("bad_record", f"{where}: 'turns' must be a non-empty list")
        parsed = []
        for t in turns:
            if not isinstance(t, dict) or t.get("role") not in ("user", "assistant"):
                raise BadRecord("bad_record", f"{where}: each turn needs a role 'user' or 'assistant'")
            segs = t.get("segments")
            if not isinstance(segs, list) or not segs:
                raise BadRecord("bad_record", f"{where}: a {t['role']} turn has no segments")
            parsed.append((t["role"], [self._segment(s, roots, where) for s in segs]))
        rid = rec.get("id")
        chat = rec.get("chat")
        return {
            "turns": parsed,
            "task": self.task or rec.get("task") or "dialog",
            "split": self.split or rec.get("split") or "train",
            "chat": chat if isinstance(chat, bool) else None,
            "source": f"{where} id={rid}" if rid is not None else where,
        }

    def _segment(self, seg: Any, roots: list[Path], where: str) -> tuple[str, Any, Any]:
        kind = seg.get("type") if isinstance(seg, dict) else None
        if kind == "text":
            if not isinstance(seg.get("text"), str):
                raise BadRecord("bad_record", f"{where}: a text segment needs a string 'text'")
            return ("text", seg["text"], None)
        if kind in ("image", "speech"):
            if isinstance(seg.get("codes"), list):
                return (kind, None, seg["codes"])
            if not isinstance(seg.get("path"), str):
                raise BadRecord("bad_record", f"{where}: an {kind} segment needs a 'path' (or 'codes')")
            return (kind, self._path(seg["path"], roots), seg.get("transcript"))
        raise BadRecord("bad_record", f"{where}: segment type {kind!r} is not text, image or speech")

    def image_paths(self, payload: object) -> list[Path]:
        return [s[1] for _, segs in payload["turns"] for s in segs if s[0] == "image" and s[1] is not None]

    def encode(self, item: Item, ctx: EncodeContext) -> list[tuple[str, Sample]]:
        p = item.payload
        turns = [Turn(role, [self._make(s, ctx, item.where) for s in segs]) for role, segs in p["turns"]]
        try:
            if len(turns) == 1 and turns[0].role == "assistant":
                enc = encode_document(turns[0].segments, ctx.layout, ctx.text)
            else:
                enc = encode_conversation(
                    Conversation(turns, chat=p["chat"], task=p["task"]), ctx.layout, ctx.text, ctx.style
                )
        except AromniError as e:  # turn order, codes out of range
            raise BadRecord("bad_record", f"{item.where}: {e}") from None
        group = self.group or group_of(enc.ids, ctx.layout)
        return [(p["split"], Sample.from_encoded(enc, p["task"], group, p["source"]))]

    def _make(self, seg: tuple[str, Any, Any], ctx: EncodeContext, where: str) -> Segment:
        kind, value, extra = seg
        if kind == "text":
            if not value.strip():
                raise BadRecord("empty_text", f"{where}: empty text segment")
            return TextSegment(value)
        if kind == "image":
            return ImageSegment(extra if value is None else ctx.media.image(value))
        codes = extra if value is None else ctx.media.speech(value)
        return SpeechSegment(codes, transcript=extra if value is not None else None)
