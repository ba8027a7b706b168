"""The speech judge's data from a world: the clips of ``speech.jsonl``, their spoken replies (assistant speech of
``REPLY_TASKS`` records, what the evaluation scores) and how often each clip is repeated per training epoch.

The training recipe that reads them is :mod:`aromni.training.recipes.judge_speech`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Protocol

import numpy as np

from aromni.toyworld.records import iter_records, read_jsonl
from aromni.utils.extras import optional
from aromni.vocab.tasks import CHAT_IMAGE, S2S, VQA_SPEECH

# Tasks whose assistant turns are spoken replies scored by the evaluation (I+S→S, S→S, spoken chat replies).
REPLY_TASKS = tuple(t.name for t in (VQA_SPEECH, S2S, CHAT_IMAGE))


class ClipRepeatSettings(Protocol):
    """What :func:`clip_repeats` reads of a speech judge training config."""

    assistant_repeat: int
    reply_repeat: int


def reply_paths(world: Path, split: str) -> set[str]:
    """Paths of the spoken replies of ``split``: assistant speech segments of ``REPLY_TASKS`` records."""
    return {seg["path"] for rec in iter_records(world, split) if rec["task"] in REPLY_TASKS
            for turn in rec["turns"] if turn["role"] == "assistant"
            for seg in turn["segments"] if seg["type"] == "speech"}


def speech_rows(world: Path, split: str, limit: int | None = None, seed: int = 0) -> list[dict]:
    """Rows of ``world/speech.jsonl`` in ``split`` (a seeded sample of ``limit`` of them if given)."""
    rows = [r for r in read_jsonl(world / "speech.jsonl") if r["split"] == split]
    if limit is not None and len(rows) > limit:
        rows = random.Random(seed).sample(rows, limit)
    return rows


def load_clips(world: Path, rows: list[dict]) -> list[tuple[np.ndarray, str]]:
    """``[(int16 wav, transcript)]`` of speech.jsonl ``rows``."""
    sf = optional("soundfile", extra="audio", feature="writing audio")

    return [(sf.read(str(world / r["path"]), dtype="int16")[0], r["transcript"]) for r in rows]


def clip_repeats(rows: list[dict], replies: set[str], cfg: ClipRepeatSettings) -> list[int]:
    """Copies per epoch of each row: 1 for user clips, more for the assistant voice and its spoken replies."""
    return [cfg.reply_repeat if r["path"] in replies else cfg.assistant_repeat if r["role"] == "assistant" else 1
            for r in rows]
