"""Task names: ours and the official AR-Omni training code's, and the alias table between them.

Shards carry a ``task`` per sample. Our builders write the short names (``asr``, ``tts``, ``caption``, ``t2i``,
``text``, ...); shards converted from the official JSONL may carry the official names. Loss options that name
tasks (``loss.tail_tasks``, ``perceptual.tasks``) accept either spelling: both sides go through
:func:`canonical_task`.

=====================  ==========  ===================================================
official name          ours        meaning
=====================  ==========  ===================================================
``image_caption``      ``caption``  image -> text description
``speech_to_text``     ``asr``      speech recognition
``text_to_image``      ``t2i``      text -> image
``text_to_speech``     ``tts``      text -> speech
``image_to_text``      ``caption``  image-first documents (the data builder maps them to ``caption`` too)
``speech_to_image``    ``s2i``      speech -> image
``text_to_text``       ``text``     text-only
=====================  ==========  ===================================================
"""

from __future__ import annotations

from collections.abc import Iterable

from aromni.training.data.official_jsonl import OFFICIAL_TASKS

#: The same table the official-data reader converts shard task names with (one source of truth).
OFFICIAL_TO_OURS: dict[str, str] = OFFICIAL_TASKS


def canonical_task(name: str) -> str:
    """Our name for ``name`` (official names are mapped; anything else is returned lower-cased)."""
    key = str(name).strip().lower()
    return OFFICIAL_TO_OURS.get(key, key)


def canonical_tasks(names: Iterable[str]) -> frozenset[str]:
    return frozenset(canonical_task(n) for n in names)
