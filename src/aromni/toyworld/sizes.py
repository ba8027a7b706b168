"""World size presets: images per split and dialog records per task and split."""

from __future__ import annotations

from dataclasses import dataclass

TASKS = (
    "asr", "tts", "caption", "t2i", "s2i", "vqa_text", "vqa_speech", "s2s", "s2t", "chat_image", "text", "text_qa",
)


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
            {"asr": 400, "tts": 200, "caption": 300, "t2i": 300, "s2i": 250, "vqa_text": 200, "vqa_speech": 150,
             "s2s": 150, "s2t": 100, "chat_image": 150, "text": 300, "text_qa": 150},
            0.1, 0.2, 10,
        ),
    ),
    "full": WorldSize(
        "full",
        images={"train": 4000, "validation": 200, "test": 600},
        records=_records(
            {"asr": 3000, "tts": 1500, "caption": 2500, "t2i": 2500, "s2i": 2000, "vqa_text": 1500,
             "vqa_speech": 1200, "s2s": 1200, "s2t": 800, "chat_image": 1500, "text": 3000, "text_qa": 1500},
            0.05, 0.1, 20,
        ),
    ),
}
