"""World size presets: images per split and dialog records per task and split."""

from __future__ import annotations

from dataclasses import dataclass

from aromni.vocab.tasks import (
    ASR,
    CAPTION,
    CHAT_IMAGE,
    S2I,
    S2S,
    S2T,
    T2I,
    TEXT,
    TEXT_QA,
    TTS,
    VQA_SPEECH,
    VQA_TEXT,
    Task,
)

#: The registry's tasks a world has records of, in build order.
WORLD_TASKS: tuple[Task, ...] = (ASR, TTS, CAPTION, T2I, S2I, VQA_TEXT, VQA_SPEECH, S2S, S2T, CHAT_IMAGE, TEXT, TEXT_QA)
#: Their names (record ``task`` fields, ``records`` keys of the sizes below).
TASKS: tuple[str, ...] = tuple(t.name for t in WORLD_TASKS)
#: The tasks whose records draw on a split's image pool (text documents describe images too).
IMAGE_TASKS: tuple[str, ...] = tuple(t.name for t in (CAPTION, T2I, S2I, VQA_TEXT, VQA_SPEECH, CHAT_IMAGE, TEXT))


@dataclass(frozen=True)
class WorldSize:
    name: str
    images: dict[str, int]
    # task -> split -> number of records
    records: dict[str, dict[str, int]]


def _records(train: dict[str, int], validation: float, test: float, minimum: int) -> dict[str, dict[str, int]]:
    return {
        task: {
            "train": n,
            "validation": max(minimum, round(n * validation)),
            "test": max(minimum, round(n * test)),
        }
        for task, n in train.items()
    }


SIZES: dict[str, WorldSize] = {
    "smoke": WorldSize(
        "smoke",
        images={"train": 32, "validation": 8, "test": 12},
        records=_records({t: 16 for t in TASKS}, 0.25, 0.4, 4),
    ),
    "small": WorldSize(
        "small",
        images={"train": 400, "validation": 40, "test": 120},
        records=_records(
            {ASR.name: 400, TTS.name: 200, CAPTION.name: 300, T2I.name: 300, S2I.name: 250, VQA_TEXT.name: 200,
             VQA_SPEECH.name: 150, S2S.name: 150, S2T.name: 100, CHAT_IMAGE.name: 150, TEXT.name: 300,
             TEXT_QA.name: 150},
            0.1, 0.2, 10,
        ),
    ),
    "full": WorldSize(
        "full",
        images={"train": 4000, "validation": 200, "test": 600},
        records=_records(
            {ASR.name: 3000, TTS.name: 1500, CAPTION.name: 2500, T2I.name: 2500, S2I.name: 2000,
             VQA_TEXT.name: 1500, VQA_SPEECH.name: 1200, S2S.name: 1200, S2T.name: 800, CHAT_IMAGE.name: 1500,
             TEXT.name: 3000, TEXT_QA.name: 1500},
            0.05, 0.1, 20,
        ),
    ),
}


# World version 2: more speech (half of ASR/TTS is random word sequences over ~2,850 words, which needs many
# more utterances than a 97-word grammar) and larger test splits (held-out words, phrasings, combinations and
# voices are measured in slices). "full" is ~31k training clips: ~10 minutes with 2 workers at ~20 ms a clip.
SIZES_V2: dict[str, WorldSize] = {
    "smoke": WorldSize(
        "smoke",
        images={"train": 32, "validation": 8, "test": 16},
        records=_records({t: 16 for t in TASKS}, 0.25, 0.5, 6),
    ),
    "small": WorldSize(
        "small",
        images={"train": 600, "validation": 40, "test": 160},
        records=_records(
            {ASR.name: 1500, TTS.name: 500, CAPTION.name: 400, T2I.name: 500, S2I.name: 300,
             VQA_TEXT.name: 200, VQA_SPEECH.name: 200, S2S.name: 200, S2T.name: 120, CHAT_IMAGE.name: 250,
             TEXT.name: 400, TEXT_QA.name: 200},
            0.1, 0.2, 10,
        ),
    ),
    "full": WorldSize(
        "full",
        images={"train": 6000, "validation": 300, "test": 1000},
        records=_records(
            {ASR.name: 12000, TTS.name: 4000, CAPTION.name: 3000, T2I.name: 4000, S2I.name: 2500,
             VQA_TEXT.name: 1500, VQA_SPEECH.name: 1500, S2S.name: 1500, S2T.name: 1000,
             CHAT_IMAGE.name: 2000, TEXT.name: 3000, TEXT_QA.name: 1500},
            0.05, 0.1, 20,
        ),
    ),
}


def with_counts(base: WorldSize, *, images: dict[str, int] | None = None,
                records: dict[str, dict[str, int]] | None = None) -> WorldSize:
    """``base`` with some counts replaced: ``images`` per split, ``records`` per task and split.

    E.g. ``with_counts(SIZES_V2["full"], images={"train": 46000}, records={"t2i": {"train": 40000}})`` is the
    full world with ten times the T2I requests, each on an image of its own. The name says it is changed
    (``full+``); the builder keeps the counts themselves in the world's identity."""
    new_images = {**base.images, **(images or {})}
    new_records = {t: dict(v) for t, v in base.records.items()}
    for task, counts in (records or {}).items():
        new_records[task] = {**new_records.get(task, {}), **counts}
    if new_images == base.images and new_records == base.records:
        return base
    return WorldSize(f"{base.name}+", new_images, new_records)
