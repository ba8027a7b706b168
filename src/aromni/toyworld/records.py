"""The JSONL record format: one dialog per line, independent of any tokenization.

::

    {"id": "train-asr-000003", "task": "asr", "split": "train",
     "turns": [{"role": "user", "segments": [{"type": "text", "text": "Transcribe the audio."},
                                             {"type": "speech", "path": "speech/train/000012.wav",
                                              "transcript": "a big red circle in the middle on white",
                                              "voice": "tr07"}]},
               {"role": "assistant", "segments": [{"type": "text", "text": "a big red circle ..."}]}],
     "meta": {"image": {...attributes...}, "heldout_combo": false, "heldout_voice": false}}

World version 2 records carry, in ``meta``, what the test split holds out (the evaluation slices by these
keys; every v2 record has all of them):

* ``heldout_combo``: ``None``, or the kind of held-out attribute pair the record's image shows
  (``"shape_color"``, ``"color_background"``, ``"shape_position"``);
* ``sentence``: what kind of sentence a record with speech says: ``"random"`` (a random word sequence),
  ``"grammar"`` (a caption, request or question) or ``"exchange"`` (a fixed exchange line or an answer);
  ``None`` without speech;
* ``heldout_words``: the test-only lexicon words in the record's text, sorted (empty outside test);
* ``heldout_phrasing``: a held-out frame, question phrasing or synonym is used;
* ``voice_kind``: who speaks the user's speech: ``"train"``, ``"heldout"`` (unseen espeak-ng speakers),
  ``"family"`` (the Klatt family) or ``"synth"`` (flite); ``None`` without user speech;
* ``heldout_voice`` (as in version 1: test user speech) and ``augmented`` (a user clip was augmented).

Paths are relative to the world directory. Roles are ``"user"``/``"assistant"``; segment types are
``"text"``/``"image"``/``"speech"``, the same as ``aromni.vocab.conversation``'s TextSegment / ImageSegment /
SpeechSegment. Text-only documents (task ``text``) are a single assistant turn.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypedDict

from aromni.errors import InputError
from aromni.utils.io import JSONValue

ROLES = ("user", "assistant")
SEGMENT_TYPES = ("text", "image", "speech")


class RecordSegment(TypedDict, total=False):
    """One segment of a turn: ``type`` plus the keys its type needs (see the module docstring)."""

    type: str
    text: str
    path: str
    transcript: str
    voice: str


class RecordTurn(TypedDict):
    role: str
    segments: list[RecordSegment]


class _RecordMeta(TypedDict, total=False):
    meta: dict[str, JSONValue]
    chat: bool


class WorldRecord(_RecordMeta):
    """One dialog of a world's ``records/{split}.jsonl`` (``meta`` is optional)."""

    id: str
    task: str
    split: str
    turns: list[RecordTurn]


def text(value: str) -> RecordSegment:
    return {"type": "text", "text": value}


def image(path: str) -> RecordSegment:
    return {"type": "image", "path": path}


def speech(path: str, transcript: str, voice: str) -> RecordSegment:
    return {"type": "speech", "path": path, "transcript": transcript, "voice": voice}


def turn(role: str, *segments: RecordSegment) -> RecordTurn:
    return {"role": role, "segments": list(segments)}


def validate(record: Mapping[str, object], where: str = "record") -> None:
    """Raise :class:`InputError` unless ``record`` has the documented shape."""
    for key in ("id", "task", "split", "turns"):
        if key not in record:
            raise InputError(f"{where}: missing key {key!r}", "rebuild the world with `aromni toyworld build`")
    if not record["turns"]:
        raise InputError(f"{where}: no turns")
    for t in record["turns"]:
        if t.get("role") not in ROLES:
            raise InputError(f"{where}: role {t.get('role')!r} is not one of {ROLES}")
        if not t.get("segments"):
            raise InputError(f"{where}: a {t['role']} turn has no segments")
        for seg in t["segments"]:
            kind = seg.get("type")
            need = {"text": ("text",), "image": ("path",), "speech": ("path", "transcript")}.get(kind)
            if need is None:
                raise InputError(f"{where}: segment type {kind!r} is not one of {SEGMENT_TYPES}")
            missing = [k for k in need if k not in seg]
            if missing:
                raise InputError(f"{where}: {kind} segment lacks {missing}")


def iter_records(world: str | Path, split: str) -> Iterator[WorldRecord]:
    """Yield the validated records of ``split`` from a built world."""
    path = Path(world) / "records" / f"{split}.jsonl"
    if not path.is_file():
        raise InputError(f"{path}: no such file", "is this a world built with `aromni toyworld build`?")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not valid JSON ({e})", "rebuild the world") from None
            validate(rec, f"{path}:{n}")
            yield rec


def read_jsonl(path: str | Path) -> list[dict[str, JSONValue]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file", "is this a world built with `aromni toyworld build`?")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dumps_jsonl(rows: Sequence[Mapping[str, object]]) -> str:
    return "".join(json.dumps(r, separators=(",", ":"), sort_keys=False) + "\n" for r in rows)
