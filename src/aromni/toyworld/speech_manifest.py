"""A built world's spoken assistant answers as (text, audio) manifests: the training data of OmniVIVO's speech
stage (``aromni omnivivo train``), which reads JSONL lines ``{"text": ..., "audio": ...}``.

Each TTS record gives one line: the transcript and the wav of its assistant speech segment. Audio paths are
written relative to the manifest's directory, so the manifest and the world can move together.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from aromni.errors import InputError
from aromni.toyworld.records import iter_records
from aromni.utils.io import atomic_write_text
from aromni.vocab.tasks import TTS

#: manifest file name -> world split.
MANIFESTS = {"train.jsonl": "train", "val.jsonl": "validation"}


def tts_speech(world: Path, split: str) -> list[tuple[str, Path]]:
    """(transcript, recording) of the assistant speech of every TTS record of ``split``, in file order."""
    out = []
    for rec in iter_records(world, split):
        if rec["task"] != TTS.name:
            continue
        for seg in rec["turns"][-1]["segments"]:
            if seg.get("type") == "speech" and seg.get("transcript"):
                out.append((str(seg["transcript"]), world / str(seg["path"])))
    return out


def speech_lines(world: Path, split: str, out_dir: Path) -> list[str]:
    """JSONL lines for the TTS records of ``split``; audio paths relative to ``out_dir``."""
    return [json.dumps({"text": text, "audio": os.path.relpath(path.resolve(), out_dir.resolve())})
            for text, path in tts_speech(world, split)]


def write_speech_manifests(world: str | Path, out_dir: str | Path, *,
                           overwrite: bool = False) -> dict[str, int]:
    """Write ``out_dir/train.jsonl`` and ``out_dir/val.jsonl`` from ``world``; returns lines per file.

    Existing manifests are replaced only with ``overwrite`` (they may be a user's own)."""
    world, out = Path(world), Path(out_dir)
    existing = [name for name in MANIFESTS if (out / name).exists()]
    if existing and not overwrite:
        raise InputError(f"{out / existing[0]} already exists",
                         "pass --overwrite to replace it, or choose another --out")
    texts = {name: speech_lines(world, split, out) for name, split in MANIFESTS.items()}
    empty = [name for name, lines in texts.items() if not lines]
    if empty:
        raise InputError(f"{world}: no TTS records for {empty[0]}",
                         "build the world with `aromni toyworld build`")
    out.mkdir(parents=True, exist_ok=True)
    for name, lines in texts.items():
        atomic_write_text(out / name, "".join(f"{line}\n" for line in lines))
    return {name: len(lines) for name, lines in texts.items()}
