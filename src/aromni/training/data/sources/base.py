"""What every data source shares: its config, how its inputs are cut into chunks, skipped-record errors.

A source turns raw inputs (manifests, JSONL, media files) into :class:`~aromni.training.data.shards.Sample` s.
The builder (:mod:`aromni.training.data.build`) asks each source for a deterministic list of :class:`Chunk` s
(a few hundred records each), hands chunks to worker processes, and each worker calls :meth:`Source.read` and
:meth:`Source.encode` record by record. A record that cannot be used raises :class:`BadRecord` with a short
reason code (``missing_file``, ``bad_audio``, ``empty_text`` ...); the builder counts it and keeps going.
"""

from __future__ import annotations

import abc
import glob
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from aromni.errors import ConfigError
from aromni.tokenizers.base import ImageTokenizer, SpeechTokenizer
from aromni.tokenizers.text import TextTokenizer
from aromni.training.data.records import BadRecord
from aromni.training.data.shards import GROUPS, Sample
from aromni.utils.io import JSONValue
from aromni.vocab.conversation import PromptStyle
from aromni.vocab.layout import VocabLayout


@dataclass
class Chunk:
    """A unit of work: ``count`` records of one source.

    ``kind`` says how to find them: ``"lines"`` (``count`` lines of ``path`` from byte ``offset``, the first
    being line ``first``), ``"items"`` (the records themselves, in ``items``) or ``"rows"`` (row group
    ``offset`` of the parquet file ``path``).
    """

    id: str
    source: int
    kind: str
    path: str = ""
    offset: int = 0
    count: int = 0
    first: int = 1
    items: list[object] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class Item:
    """One raw record as read from a chunk: where it came from, and its payload or the error reading it."""

    where: str
    payload: Any = None
    error: BadRecord | None = None


@dataclass
class EncodeContext:
    """What :meth:`Source.encode` may use: the layout, tokenizers, prompt style, media cache, limits."""

    layout: VocabLayout
    text: TextTokenizer | None
    image: ImageTokenizer | None
    speech: SpeechTokenizer | None
    style: PromptStyle
    # aromni.training.data.sources.media.MediaCache (not imported: that module imports this one)
    media: Any
    max_len: int


class Source(abc.ABC):
    """A configured input. Subclasses define :attr:`type_name`, :meth:`plan`, :meth:`read`, :meth:`encode`.

    Common config keys: ``type``, ``paths`` (files, directories or globs; relative to the build root),
    ``split`` (default ``train``), ``group`` (override the modality group), ``name`` (for the report),
    ``chunk_size`` (records per work unit).
    """

    type_name: ClassVar[str]
    #: Config keys this type accepts beyond the common ones.
    options: ClassVar[tuple[str, ...]] = ()
    #: Group of every sample unless the config sets ``group`` (``None``: decided per sample from its ids).
    default_group: ClassVar[str | None] = None
    common: ClassVar[tuple[str, ...]] = ("type", "paths", "split", "group", "name", "chunk_size")

    def __init__(self, index: int, cfg: Mapping[str, JSONValue], base: Path):
        self.index = index
        self.cfg = dict(cfg)
        self.base = Path(base)
        where = f"sources[{index}] ({cfg.get('type')})"
        self.where = where
        unknown = set(cfg) - set(self.common) - set(self.options)
        if unknown:
            raise ConfigError(
                f"{where}: unknown keys {sorted(unknown)}",
                f"known: {sorted(set(self.common) | set(self.options))}",
            )
        raw_paths = cfg.get("paths")
        if isinstance(raw_paths, str):
            raw_paths = [raw_paths]
        if not raw_paths or not all(isinstance(p, str) for p in raw_paths):
            raise ConfigError(f"{where}: 'paths' must be a path or a list of paths/globs")
        self.raw_paths = list(raw_paths)
        self.split = cfg.get("split")
        if self.split is not None and (not isinstance(self.split, str) or not self.split.isidentifier()):
            raise ConfigError(f"{where}: split {self.split!r} must be a simple name like train or validation")
        self.group = cfg.get("group", self.default_group)
        if self.group is not None and self.group not in GROUPS:
            raise ConfigError(f"{where}: group {self.group!r} is not one of {GROUPS}")
        self.name = str(cfg.get("name") or f"{index}:{self.type_name}")
        self.chunk_size = cfg.get("chunk_size")
        if self.chunk_size is not None and (not isinstance(self.chunk_size, int) or self.chunk_size < 1):
            raise ConfigError(f"{where}: chunk_size must be a positive integer")

    # ---------------------------------------------------------------- inputs
    def resolve(self, p: str) -> Path:
        path = Path(os.path.expanduser(p))
        return path if path.is_absolute() else self.base / path

    def expand(
        self, suffixes: Sequence[str] | None = None, raw_paths: Sequence[str] | None = None
    ) -> list[Path]:
        """Resolve ``paths`` (or ``raw_paths``) into files: globs expanded, directories listed (only
        ``suffixes``).

        Raises :class:`ConfigError` when a path matches nothing (a typo must not yield an empty dataset).
        """
        out: list[Path] = []
        for raw in self.raw_paths if raw_paths is None else raw_paths:
            path = self.resolve(raw)
            if glob.has_magic(str(path)):
                hits = sorted(Path(h) for h in glob.glob(str(path), recursive=True))
                hits = [h for h in hits if h.is_file()]
            elif path.is_dir():
                hits = sorted(
                    h
                    for h in path.rglob("*")
                    if h.is_file() and (suffixes is None or h.suffix.lower() in suffixes)
                )
            elif path.is_file():
                hits = [path]
            else:
                raise ConfigError(
                    f"{self.where}: {path} does not exist",
                    "fix 'paths' (relative paths start at "
                    "the config file's directory, or at 'root' when the config sets one)",
                )
            if not hits:
                raise ConfigError(f"{self.where}: {raw!r} matches no input files")
            out.extend(hits)
        return out

    def input_files(self) -> list[Path]:
        """Every file whose content decides the chunks (for the resume fingerprint)."""
        return self.expand()

    def needs(self) -> set[str]:
        """Tokenizer modalities this source needs."""
        return {"text"}

    # ---------------------------------------------------------------- work
    @abc.abstractmethod
    def plan(self, chunk_size: int) -> list[Chunk]:
        """Cut the inputs into chunks (deterministic: same inputs, same chunks)."""

    @abc.abstractmethod
    def read(self, chunk: Chunk) -> Iterator[Item]:
        """The raw records of ``chunk``, in order."""

    @abc.abstractmethod
    def encode(self, item: Item, ctx: EncodeContext) -> list[tuple[str, Sample]]:
        """``(split, sample)`` pairs of one record; raises :class:`BadRecord` to skip it."""

    def image_paths(self, payload: object) -> list[Path]:
        """Images a record needs (a worker encodes a chunk's images in batches before :meth:`encode`)."""
        return []

    def chunk_id(self, n: int) -> str:
        return f"s{self.index:03d}-c{n:06d}"


# -------------------------------------------------------------------- chunking helpers
def line_chunks(source: Source, paths: Sequence[Path], chunk_size: int) -> list[Chunk]:
    """Chunks of ``chunk_size`` non-blank lines, located by byte offset (one pass over each file)."""
    chunks: list[Chunk] = []
    for path in paths:
        with open(path, "rb") as f:
            offset = pos = 0
            first = count = 0
            for n, line in enumerate(f, 1):
                if line.strip():
                    if count == 0:
                        offset, first = pos, n
                    count += 1
                    if count == chunk_size:
                        chunks.append(
                            Chunk(
                                source.chunk_id(len(chunks)),
                                source.index,
                                "lines",
                                str(path),
                                offset,
                                count,
                                first,
                            )
                        )
                        count = 0
                pos += len(line)
            if count:
                chunks.append(
                    Chunk(
                        source.chunk_id(len(chunks)), source.index, "lines", str(path), offset, count, first
                    )
                )
    return chunks


def item_chunks(source: Source, items: Sequence[object], chunk_size: int) -> list[Chunk]:
    return [
        Chunk(
            source.chunk_id(k),
            source.index,
            "items",
            items=list(items[i : i + chunk_size]),
            count=len(items[i : i + chunk_size]),
        )
        for k, i in enumerate(range(0, len(items), chunk_size))
    ]


def read_lines(chunk: Chunk) -> Iterator[tuple[str, str]]:
    """``(where, line)`` for the ``count`` non-blank lines of a ``"lines"`` chunk."""
    seen = 0
    with open(chunk.path, "rb") as f:
        f.seek(chunk.offset)
        n = chunk.first
        while seen < chunk.count:
            raw = f.readline()
            if not raw:
                break
            if raw.strip():
                seen += 1
                try:
                    yield f"{chunk.path}:{n}", raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    yield f"{chunk.path}:{n}", None  # type: ignore[misc]
            n += 1


def json_items(chunk: Chunk) -> Iterator[Item]:
    """Items of a JSONL ``"lines"`` chunk: the parsed object, or a ``bad_json`` error."""
    for where, line in read_lines(chunk):
        if line is None:
            yield Item(where, error=BadRecord("bad_json", f"{where}: not UTF-8 text"))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield Item(where, error=BadRecord("bad_json", f"{where}: not valid JSON ({e.msg})"))
            continue
        if not isinstance(obj, dict):
            yield Item(where, error=BadRecord("bad_record", f"{where}: a JSON object per line is expected"))
            continue
        yield Item(where, obj)


def str_list(value: object, where: str, key: str, allowed: Sequence[str]) -> list[str]:
    """A config value that is one name or a list of names, each in ``allowed``."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key!r} must be a name or a list of names from {list(allowed)}")
    bad = [v for v in value if v not in allowed]
    if bad:
        raise ConfigError(f"{where}: {key} {bad} not in {list(allowed)}")
    return list(dict.fromkeys(value))
