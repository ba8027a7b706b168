"""Encode one chunk of records into a finished chunk directory (run in a worker process or in-process).

A finished chunk is ``STAGE/<chunk id>/`` holding ``<split>/shard-00000.parquet`` (the chunk's samples, in
record order) and ``summary.json`` (counts, skipped records per reason with examples). It is built in a
temporary sibling and renamed into place, so a chunk directory exists only when the chunk is complete: a build
killed at any point resumes by redoing the chunks that have none.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from aromni.training.data.records import BadRecord
from aromni.training.data.shards import Sample, ShardWriter
from aromni.training.data.sources import make_source
from aromni.training.data.sources.base import Chunk, EncodeContext
from aromni.training.data.sources.media import MediaCache
from aromni.training.data.sources.toolkit import Toolkit, ToolkitSpec, load_from_spec
from aromni.utils.io import JSONValue, atomic_dir, atomic_write_json

SUMMARY = "summary.json"
#: Examples kept per skip reason (per chunk, and in the final report).
MAX_EXAMPLES = 5


class Summary:
    """Counts of one chunk: records read, samples per split/task/group, skipped records per reason."""

    def __init__(self, chunk: str, source: int):
        self.chunk, self.source = chunk, source
        self.records = 0
        self.skipped: dict[str, int] = defaultdict(int)
        self.examples: dict[str, list[str]] = defaultdict(list)
        # split -> task -> group -> [rows, tokens, response tokens]
        self.stats: dict[str, dict[str, dict[str, list[int]]]] = {}

    def skip(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples[reason]) < MAX_EXAMPLES:
            self.examples[reason].append(message)

    def add(self, split: str, s: Sample) -> None:
        row = self.stats.setdefault(split, {}).setdefault(s.task, {}).setdefault(s.group, [0, 0, 0])
        row[0] += 1
        row[1] += len(s)
        row[2] += int(s.response.sum())

    def to_dict(self) -> dict[str, JSONValue]:
        return {
            "chunk": self.chunk,
            "source": self.source,
            "records": self.records,
            "skipped": dict(self.skipped),
            "examples": dict(self.examples),
            "stats": self.stats,
        }


class Worker:
    """Holds the loaded tokenizers and sources; :meth:`run` encodes one chunk."""

    def __init__(self, kit: Toolkit, sources: Sequence[Mapping[str, JSONValue]], base: str,
                 options: Mapping[str, JSONValue]):
        self.kit = kit
        self.sources = [make_source(i, s, Path(base)) for i, s in enumerate(sources)]
        self.max_len = int(options["max_len"])
        self.media = MediaCache(
            self.kit.image,
            self.kit.speech,
            image_batch=options["image_batch"],
            max_audio_seconds=options["max_audio_seconds"],
        )
        self.ctx = EncodeContext(
            self.kit.layout,
            self.kit.text,
            self.kit.image,
            self.kit.speech,
            self.kit.style,
            self.media,
            self.max_len,
        )

    def run(self, chunk_dict: Mapping[str, object], stage: str) -> dict[str, JSONValue]:
        chunk = Chunk(**chunk_dict)
        src = self.sources[chunk.source]
        summary = Summary(chunk.id, chunk.source)
        per_split: dict[str, list[Sample]] = defaultdict(list)
        self.media.clear()
        items = list(src.read(chunk))
        self.media.prefetch_images(
            [p for it in items if it.error is None for p in src.image_paths(it.payload)]
        )
        for it in items:
            summary.records += 1
            if it.error is not None:
                summary.skip(it.error.reason, str(it.error))
                continue
            try:
                pairs = src.encode(it, self.ctx)
            except BadRecord as e:
                msg = str(e)
                summary.skip(e.reason, msg if msg.startswith(it.where) else f"{it.where}: {msg}")
                continue
            for split, sample in pairs:
                if len(sample) > self.max_len:
                    summary.skip(
                        "too_long", f"{sample.source}: {len(sample)} tokens > max_len {self.max_len}"
                    )
                    continue
                per_split[split].append(sample)
                summary.add(split, sample)
        self.media.clear()
        with atomic_dir(Path(stage) / chunk.id, overwrite=True) as tmp:
            for split, samples in per_split.items():
                w = ShardWriter(tmp, split, rows_per_shard=len(samples) + 1)
                for s in samples:
                    w.add(s)
                w.close()
            atomic_write_json(tmp / SUMMARY, summary.to_dict())
        return summary.to_dict()


# ---------------------------------------------------------------- process-pool entry points
#: The worker of this process. A parent about to fork sets it, so forked workers start with the tokenizers
#: already loaded; spawned (or forkserver) workers load them in :func:`init_process`.
_WORKER: Worker | None = None


def init_process(
    spec: ToolkitSpec, sources: Sequence[Mapping[str, JSONValue]], base: str,
    options: Mapping[str, JSONValue],
) -> None:
    """Pool initializer: one thread per worker (the workers are the parallelism), tokenizers loaded once."""
    global _WORKER
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import torch

    torch.set_num_threads(1)
    if _WORKER is None:
        _WORKER = Worker(load_from_spec(spec), sources, base, options)


def set_inherited(worker: Worker | None) -> None:
    """Set (or clear, with ``None``) the worker that forked children inherit."""
    global _WORKER
    _WORKER = worker


def run_in_process(chunk_dict: Mapping[str, object], stage: str) -> dict[str, JSONValue]:
    assert _WORKER is not None, "init_process was not called"
    out = _WORKER.run(chunk_dict, stage)
    out["pid"] = os.getpid()
    return out
