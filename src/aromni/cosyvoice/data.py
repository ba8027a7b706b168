"""Clips of a speech manifest for the speech stack's toy trainings.

A manifest is a JSON-lines file with one clip per line: ``path`` (relative to the manifest's folder),
``transcript``, ``split`` and, optionally, ``voice`` and ``duration_s``. A toy world's ``speech.jsonl`` is one
(``aromni toyworld build``); any corpus can be written in the same shape.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from aromni.errors import InputError
from aromni.tokenizers.speech.audio_io import load_audio
from aromni.utils.io import read_jsonl

__all__ = ["Clip", "load_clip", "read_manifest"]


@dataclass(frozen=True)
class Clip:
    """One utterance of a manifest."""

    path: Path
    transcript: str
    voice: str
    duration_s: float | None


def read_manifest(manifest: str | Path, split: str, *, max_seconds: float | None = None,
                  limit: int | None = None, seed: int = 0) -> list[Clip]:
    """The clips of ``split`` in ``manifest`` (a ``speech.jsonl``, or a folder holding one), optionally only
    those of at most ``max_seconds`` and a seeded sample of ``limit`` of them (in manifest order)."""
    manifest = Path(manifest)
    if manifest.is_dir():
        manifest = manifest / "speech.jsonl"
    if not manifest.is_file():
        raise InputError(f"{manifest}: no speech manifest",
                         "pass a toy world (`aromni toyworld build`) or a speech.jsonl with path/transcript/split")
    clips = []
    for n, row in read_jsonl(manifest, "speech manifest"):
        if not isinstance(row, dict) or not isinstance(row.get("path"), str) or "transcript" not in row:
            raise InputError(f"{manifest}: line {n} has no 'path' and 'transcript'",
                             "each line needs path, transcript and split")
        if row.get("split") != split:
            continue
        dur = row.get("duration_s")
        if max_seconds is not None and dur is not None and dur > max_seconds:
            continue
        clips.append(Clip(manifest.parent / row["path"], str(row["transcript"]), str(row.get("voice", "")),
                          float(dur) if dur is not None else None))
    if not clips:
        raise InputError(f"{manifest}: no clips in split {split!r}", "check --split (train, validation, test)")
    if limit is not None and len(clips) > limit:
        keep = set(random.Random(seed).sample(range(len(clips)), limit))
        clips = [c for i, c in enumerate(clips) if i in keep]
    return clips


def load_clip(clip: Clip, sample_rate: int) -> torch.Tensor:
    """The clip's mono float32 waveform ``[T]`` at ``sample_rate`` (soxr resampling)."""
    return load_audio(clip.path, sample_rate)
