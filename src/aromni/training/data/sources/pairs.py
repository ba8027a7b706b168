"""``speech_text`` and ``image_text`` sources: (media file, text) pairs -> single-turn task samples.

Inputs, for both:

* a manifest ``.tsv`` / ``.txt``: ``path<TAB>text`` per line (a first line ``path<TAB>text`` or
  ``audio<TAB>text`` / ``image<TAB>caption`` is a header and skipped);
* a manifest ``.jsonl``: objects with the media path under ``path`` (or ``audio`` / ``image``) and the text
  under ``text`` (or ``transcript`` / ``caption``);
* a directory: every media file with a same-stem ``.txt`` beside it.

Relative media paths start at the manifest's directory (or ``media_root`` when set). Each pair yields one
sample per configured task, built with :func:`aromni.vocab.templates.task_conversation` in the build's prompt
style and encoded with :func:`aromni.vocab.conversation.encode_conversation`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

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
    str_list,
)
from aromni.utils.io import JSONValue
from aromni.vocab.conversation import encode_conversation
from aromni.vocab.tasks import ASR, CAPTION, T2I, TTS
from aromni.vocab.templates import task_conversation

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MANIFEST_SUFFIXES = (".tsv", ".txt", ".jsonl")
HEADER_NAMES = {"path", "audio", "image", "file", "filename"}


class PairSource(Source):
    """Base of the two pair sources; subclasses set the media kind and tasks."""

    options = ("tasks", "media_root", "instructions")
    media: ClassVar[str]  # "speech" | "image"
    suffixes: ClassVar[tuple[str, ...]]
    all_tasks: ClassVar[tuple[str, ...]]
    #: The task that reads the media and answers in text (the other one generates the media from the text).
    to_text_task: ClassVar[str]
    path_keys: ClassVar[tuple[str, ...]]
    text_keys: ClassVar[tuple[str, ...]]

    def __init__(self, index: int, cfg: Mapping[str, JSONValue], base: Path):
        super().__init__(index, cfg, base)
        self.tasks = str_list(
            self.cfg.get("tasks", list(self.all_tasks)), self.where, "tasks", self.all_tasks
        )
        root = self.cfg.get("media_root")
        self.media_root = None if root is None else self.resolve(str(root))
        instr = self.cfg.get("instructions") or {}
        if not isinstance(instr, dict) or not all(
            k in self.tasks and isinstance(v, str) for k, v in instr.items()
        ):
            raise ConfigError(f"{self.where}: instructions must map tasks {self.tasks} to strings")
        self.instructions = instr

    def needs(self) -> set[str]:
        return {"text", self.media}

    def input_files(self) -> list[Path]:
        return self.expand(MANIFEST_SUFFIXES + self.suffixes)

    def plan(self, chunk_size: int) -> list[Chunk]:
        manifests: list[Path] = []
        pairs: list[list[str]] = []
        for raw in self.raw_paths:
            path = self.resolve(raw)
            if path.is_dir():
                found = sorted(
                    p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in self.suffixes
                )
                if not found:
                    raise ConfigError(
                        f"{self.where}: directory {path} has no {self.media} files",
                        f"expected {', '.join(self.suffixes)} files with same-stem .txt files",
                    )
                pairs.extend([str(m), str(m.with_suffix(".txt"))] for m in found)
            else:
                manifests.extend(
                    f for f in self.expand(raw_paths=[raw]) if f.suffix.lower() in MANIFEST_SUFFIXES
                )
        chunks = line_chunks(self, manifests, chunk_size)
        for c in item_chunks(self, pairs, chunk_size):
            c.id = self.chunk_id(len(chunks))
            chunks.append(c)
        return chunks

    # ------------------------------------------------------------------ reading
    def read(self, chunk: Chunk) -> Iterator[Item]:
        if chunk.kind == "items":
            for media, txt in chunk.items:
                try:
                    text = Path(txt).read_text(encoding="utf-8")
                except FileNotFoundError:
                    yield Item(media, error=BadRecord("missing_file", f"{txt}: no transcript/caption file"))
                    continue
                except UnicodeDecodeError:
                    yield Item(media, error=BadRecord("bad_text", f"{txt}: not UTF-8 text"))
                    continue
                yield Item(media, {"media": Path(media), "text": text})
            return
        root = self.media_root or Path(chunk.path).parent
        items = json_items(chunk) if chunk.path.endswith(".jsonl") else self._tsv_items(chunk)
        for item in items:
            if item.error is None:
                item = self._pair(item, root)
            yield item

    def _tsv_items(self, chunk: Chunk) -> Iterator[Item]:
        for where, line in read_lines(chunk):
            if line is None:
                yield Item(where, error=BadRecord("bad_text", f"{where}: not UTF-8 text"))
                continue
            path, sep, text = line.partition("\t")
            if where.endswith(":1") and path.strip().lower() in HEADER_NAMES:
                continue
            if not sep:
                yield Item(where, error=BadRecord("bad_record", f"{where}: expected 'path<TAB>text'"))
                continue
            yield Item(where, {"path": path, "text": text})

    def _pair(self, item: Item, root: Path) -> Item:
        obj = item.payload
        path = next((obj[k] for k in ("path",) + self.path_keys if isinstance(obj.get(k), str)), None)
        text = next((obj[k] for k in ("text",) + self.text_keys if isinstance(obj.get(k), str)), None)
        if path is None or text is None:
            return Item(
                item.where,
                error=BadRecord(
                    "bad_record",
                    f"{item.where}: needs a media path ({'/'.join(('path',) + self.path_keys)}) and "
                    f"a text ({'/'.join(('text',) + self.text_keys)})",
                ),
            )
        media = Path(path.strip())
        return Item(item.where, {"media": media if media.is_absolute() else root / media, "text": text})

    def image_paths(self, payload: object) -> list[Path]:
        return [payload["media"]] if self.media == "image" else []

    # ------------------------------------------------------------------ encoding
    def encode(self, item: Item, ctx: EncodeContext) -> list[tuple[str, Sample]]:
        text = item.payload["text"].strip()
        if not text:
            raise BadRecord("empty_text", f"{item.where}: empty text")
        media = item.payload["media"]
        codes = ctx.media.speech(media) if self.media == "speech" else ctx.media.image(media)
        out = []
        for task in self.tasks:
            conv = task_conversation(
                task,
                style=ctx.style.name,
                instruction=self.instructions.get(task),
                **self._task_args(task, text, codes),
            )
            enc = encode_conversation(conv, ctx.layout, ctx.text, ctx.style)
            out.append(
                (self.split or "train", Sample.from_encoded(enc, task, self.group, f"{item.where}#{task}"))
            )
        return out

    def _task_args(self, task: str, text: str, codes: object) -> dict[str, object]:
        if task == self.to_text_task:
            return {self.media: codes, "response_text": text}
        return {"text": text, f"response_{self.media}": codes}


class SpeechTextSource(PairSource):
    type_name = "speech_text"
    media = "speech"
    default_group = "speech"
    suffixes = AUDIO_SUFFIXES
    all_tasks = (ASR.name, TTS.name)
    to_text_task = ASR.name
    path_keys = ("audio", "wav", "file")
    text_keys = ("transcript", "sentence")


class ImageTextSource(PairSource):
    type_name = "image_text"
    media = "image"
    default_group = "image"
    suffixes = IMAGE_SUFFIXES
    all_tasks = (CAPTION.name, T2I.name)
    to_text_task = CAPTION.name
    path_keys = ("image", "file")
    text_keys = ("caption", "prompt")
