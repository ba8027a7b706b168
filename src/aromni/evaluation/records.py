"""Per-sample records on disk: one JSON file per finished sample, written atomically, so an interrupted run
resumes by skipping the samples that have a record.

Layout of a run directory (``--out``, one per model)::

    run.json                  what is evaluated and how (model, data, judges, settings); a resumed run must match
    samples/<id>.json         one record per sample (hypothesis, error counts, scores, timings)
    shards/rank-R-of-W.done   completion markers (sharding.py)
    metrics.json, report.md   the merge's output (rank 0)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from aromni.errors import InputError
from aromni.utils.io import JSONValue, atomic_write_json, read_json

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(sample_id: str) -> str:
    """A sample id as a file name stem (anything but letters, digits, ``_.-`` becomes ``_``)."""
    return _UNSAFE.sub("_", sample_id)


class RecordStore:
    """The records of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.samples = self.root / "samples"

    def path(self, sample_id: str) -> Path:
        return self.samples / f"{safe_name(sample_id)}.json"

    def has(self, sample_id: str) -> bool:
        return self.path(sample_id).is_file()

    def write(self, sample_id: str, record: Mapping[str, JSONValue]) -> None:
        atomic_write_json(self.path(sample_id), {"id": sample_id, **record}, indent=0)

    def read(self, sample_id: str) -> dict[str, JSONValue]:
        rec = read_json(self.path(sample_id))
        if not isinstance(rec, dict) or rec.get("id") != sample_id:
            raise InputError(f"{self.path(sample_id)}: not the record of sample {sample_id!r}",
                             "delete it and rerun; the sample is then evaluated again")
        return rec

    def read_all(self, ids: Iterable[str]) -> list[dict[str, JSONValue]]:
        return [self.read(i) for i in ids]

    def complete(self, ids: Iterable[str]) -> bool:
        return all(self.has(i) for i in ids)

    def claim(self, settings: Mapping[str, JSONValue]) -> None:
        """Write ``run.json`` with ``settings``, or check that an existing one (a run being resumed, or another
        rank's) holds the same; a different one is refused so records of two set-ups never mix."""
        path = self.root / "run.json"
        if path.is_file():
            old = read_json(path)
            if old != dict(settings):
                diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k)) \
                    if isinstance(old, dict) else ["run.json"]
                raise InputError(f"{self.root} holds records of another set-up (differs in {', '.join(diff)})",
                                 "choose another --out, or delete it to start again")
            return
        atomic_write_json(path, dict(settings))
