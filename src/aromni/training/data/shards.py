"""Token shards: tokenized samples in parquet files (pyarrow), plus a manifest.

::

    DATA/
      manifest.json                  {"format": "aromni-shards", "version": 1, "layout": {...}, "splits": {...},
                                      "report": {...}}   (written last: a directory without it is unfinished)
      train/shard-00000.parquet ...  one row per sample
      validation/...  test/...

Row schema (:data:`SCHEMA`):

=============  =========================  ======================================================================
column         type                       meaning
=============  =========================  ======================================================================
``ids``        list<int32>                the whole token sequence (an encoded conversation)
``response``   list<bool>                 True where the token was produced by the assistant (see
                                          :class:`~aromni.vocab.conversation.EncodedConversation`)
``spans``      list<struct>               typed content spans: kind (text/image/speech), start, stop, role, turn
``task``       string                     task name (e.g. ``asr``, ``tts``, ``caption``, ``t2i``, ``text``)
``group``      string                     modality group for mixing: ``text``, ``image`` or ``speech``
``source``     string                     provenance (file / record id)
=============  =========================  ======================================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aromni.errors import InputError
from aromni.utils.io import JSONValue, atomic_path, atomic_write_json, read_json
from aromni.vocab.conversation import EncodedConversation, Span
from aromni.vocab.layout import VocabLayout

FORMAT = "aromni-shards"
VERSION = 1
MANIFEST = "manifest.json"
GROUPS = ("text", "image", "speech")


def _schema() -> Any:
    import pyarrow as pa

    span = pa.struct([("kind", pa.string()), ("start", pa.int32()), ("stop", pa.int32()),
                      ("role", pa.string()), ("turn", pa.int16())])
    return pa.schema([("ids", pa.list_(pa.int32())), ("response", pa.list_(pa.bool_())),
                      ("spans", pa.list_(span)), ("task", pa.string()), ("group", pa.string()),
                      ("source", pa.string())])


@dataclass
class Sample:
    """One tokenized sample as read back from a shard."""

    ids: np.ndarray  # [T] int64
    response: np.ndarray  # [T] bool
    spans: list[Span]
    task: str
    group: str
    source: str = ""

    def __len__(self) -> int:
        return int(self.ids.size)

    @classmethod
    def from_encoded(cls, enc: EncodedConversation, task: str, group: str, source: str = "") -> Sample:
        return cls(enc.ids.astype(np.int64), enc.is_response.astype(bool), list(enc.spans), task, group, source)

    def to_row(self) -> dict[str, JSONValue]:
        if self.group not in GROUPS:
            raise InputError(f"sample group must be one of {GROUPS}, got {self.group!r}")
        return {"ids": self.ids.astype(np.int32).tolist(), "response": self.response.astype(bool).tolist(),
                "spans": [{"kind": s.kind, "start": s.start, "stop": s.stop, "role": s.role, "turn": s.turn}
                          for s in self.spans],
                "task": self.task, "group": self.group, "source": self.source}

    @classmethod
    def from_row(cls, row: Mapping[str, JSONValue]) -> Sample:
        ids = np.asarray(row["ids"], dtype=np.int64)
        response = np.asarray(row["response"], dtype=bool)
        if ids.size == 0 or response.size != ids.size:
            raise InputError("corrupt shard row: empty ids or response mask of the wrong length")
        spans = [Span(s["kind"], int(s["start"]), int(s["stop"]), s["role"], int(s["turn"])) for s in row["spans"]]
        return cls(ids, response, spans, str(row["task"]), str(row["group"]), str(row.get("source") or ""))


class ShardWriter:
    """Append samples to ``DIR/<split>/shard-NNNNN.parquet`` files of ``rows_per_shard`` rows (each atomic)."""

    def __init__(self, root: str | Path, split: str, rows_per_shard: int = 4096, start_index: int = 0):
        self.dir = Path(root) / split
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rows_per_shard = rows_per_shard
        self.index = start_index
        self._rows: list[dict[str, JSONValue]] = []
        self.written = 0

    def add(self, sample: Sample) -> None:
        self._rows.append(sample.to_row())
        if len(self._rows) >= self.rows_per_shard:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self._rows, schema=_schema())
        with atomic_path(self.dir / f"shard-{self.index:05d}.parquet") as tmp:
            pq.write_table(table, tmp)
        self.written += len(self._rows)
        self._rows = []
        self.index += 1

    def close(self) -> None:
        self.flush()


def write_manifest(root: str | Path, layout: VocabLayout, splits: Mapping[str, JSONValue], report: Mapping[str, JSONValue],
                   extra: Mapping[str, JSONValue] | None = None) -> None:
    atomic_write_json(Path(root) / MANIFEST, {"format": FORMAT, "version": VERSION, "layout": layout.to_dict(),
                                              "splits": splits, "report": report, **(extra or {})})


def read_manifest(root: str | Path) -> dict[str, JSONValue]:
    root = Path(root)
    if not (root / MANIFEST).is_file():
        raise InputError(f"{root}: no {MANIFEST}", "the shard directory is missing or its build did not finish")
    m = read_json(root / MANIFEST)
    if m.get("format") != FORMAT:
        raise InputError(f"{root / MANIFEST}: not an aromni shard manifest")
    return m


class ShardDataset:
    """Random access over all rows of one split (rows are loaded into memory as Arrow tables).

    Corrupt rows (empty, mismatched masks, ids past ``vocab_size``) are skipped and counted in
    :attr:`skipped`, never silently.
    """

    def __init__(self, root: str | Path, split: str = "train", *, vocab_size: int | None = None):
        import pyarrow.parquet as pq

        self.root = Path(root)
        files = sorted((self.root / split).glob("shard-*.parquet"))
        if not files:
            raise InputError(f"{self.root / split}: no shard files", "run `aromni data build` first")
        self._tables = [pq.read_table(f) for f in files]
        self._offsets = np.cumsum([0] + [t.num_rows for t in self._tables])
        self.vocab_size = vocab_size
        self.skipped: dict[str, int] = {}
        self._valid = self._scan()

    def _scan(self) -> np.ndarray:
        import pyarrow.compute as pc

        keep = []
        for ti, table in enumerate(self._tables):
            ids_len = pc.list_value_length(table["ids"]).to_numpy(zero_copy_only=False)
            resp_len = pc.list_value_length(table["response"]).to_numpy(zero_copy_only=False)
            ok = (ids_len > 0) & (ids_len == resp_len)
            if self.vocab_size is not None:
                flat_max = [int(np.max(v)) if len(v) else -1 for v in table["ids"].to_pylist()]
                flat_min = [int(np.min(v)) if len(v) else 0 for v in table["ids"].to_pylist()]
                ok &= (np.asarray(flat_max) < self.vocab_size) & (np.asarray(flat_min) >= 0)
            bad = int((~ok).sum())
            if bad:
                self.skipped["corrupt_rows"] = self.skipped.get("corrupt_rows", 0) + bad
            keep.append(np.nonzero(ok)[0] + self._offsets[ti])
        return np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(self._valid.size)

    def _row(self, global_row: int) -> dict[str, JSONValue]:
        ti = int(np.searchsorted(self._offsets, global_row, side="right") - 1)
        local = int(global_row - self._offsets[ti])
        return {k: self._tables[ti][k][local].as_py() for k in self._tables[ti].column_names}

    def __getitem__(self, i: int) -> Sample:
        return Sample.from_row(self._row(int(self._valid[i])))

    def column(self, name: str) -> list[JSONValue]:
        """A scalar column (``task``, ``group``, ``source``) over the valid rows, in index order."""
        values = [v for t in self._tables for v in t[name].to_pylist()]
        return [values[int(j)] for j in self._valid]

    def lengths(self) -> np.ndarray:
        import pyarrow.compute as pc

        lens = np.concatenate([pc.list_value_length(t["ids"]).to_numpy(zero_copy_only=False) for t in self._tables])
        return lens[self._valid].astype(np.int64)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]


def write_samples(root: str | Path, split: str, samples: Sequence[Sample], rows_per_shard: int = 4096) -> int:
    """Convenience: write ``samples`` to ``root/split`` and return how many were written."""
    w = ShardWriter(root, split, rows_per_shard)
    for s in samples:
        w.add(s)
    w.close()
    return w.written
