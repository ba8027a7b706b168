"""Score the judges on a world's ground truth: speech WER (overall, held-out voices, per voice, spoken replies) and
image accuracy per attribute plus all-correct.

The assistant voice has no jitter, so a test-split reply whose sentence also occurs in training ("it is pink") is
the very clip the judge trained on. ``measure_fresh_replies`` therefore also reads new renditions of the split's
reply sentences (the assistant voice at other speeds and pitches), which no training clip matches."""

from __future__ import annotations

import collections
from pathlib import Path

from aromni.errors import InputError
from aromni.toyworld.attributes import ATTRIBUTE_NAMES
from aromni.toyworld.judges.image import ImageJudge
from aromni.toyworld.judges.speech import SpeechJudge
from aromni.toyworld.judges.speech_data import reply_paths
from aromni.toyworld.judges.wer import wer
from aromni.toyworld.records import read_jsonl
from aromni.toyworld.voices import ASSISTANT_VOICE, synthesize
from aromni.utils.io import JSONValue


def measure_speech(judge: SpeechJudge, world: Path, split: str, limit: int | None = None) -> dict[str, JSONValue]:
    rows = [r for r in read_jsonl(world / "speech.jsonl") if r["split"] == split][:limit]
    if not rows:
        raise InputError(f"{world}: no {split} clips in speech.jsonl")
    hyps = judge.transcribe_files([world / r["path"] for r in rows])
    by_voice: dict[str, list[int]] = collections.defaultdict(list)
    for i, r in enumerate(rows):
        by_voice[r["voice"]].append(i)

    def sub(idx: list[int]) -> float:
        return round(wer([rows[i]["transcript"] for i in idx], [hyps[i] for i in idx]), 5)

    user = [i for i, r in enumerate(rows) if r["role"] == "user"]
    assistant = [i for i, r in enumerate(rows) if r["role"] == "assistant"]
    replies = reply_paths(world, split)
    reply = [i for i, r in enumerate(rows) if r["path"] in replies]
    errors = [{"voice": rows[i]["voice"], "ref": rows[i]["transcript"], "hyp": hyps[i]}
              for i in range(len(rows)) if rows[i]["transcript"] != hyps[i]]
    return {
        "split": split, "clips": len(rows), "wer": sub(list(range(len(rows)))),
        "wer_user_voices": sub(user) if user else None, "wer_assistant_voice": sub(assistant) if assistant else None,
        "wer_replies": sub(reply) if reply else None, "reply_clips": len(reply),
        "replies_exact": round(sum(hyps[i] == rows[i]["transcript"] for i in reply) / len(reply), 5) if reply else None,
        "per_voice": {v: sub(idx) for v, idx in sorted(by_voice.items())},
        "examples_of_errors": errors[:10],
    }


# (speed, pitch) offsets of the fresh renditions: the world's user-voice jitter range (±10 wpm, ±6 pitch).
FRESH_JITTERS = ((-10, -6), (10, 6), (-10, 6), (10, -6))


def measure_fresh_replies(judge: SpeechJudge, world: Path, split: str) -> dict[str, JSONValue] | None:
    """Exact-read rate of the split's distinct reply sentences re-synthesised in the assistant voice at each of
    ``FRESH_JITTERS`` (None without espeak-ng)."""
    import shutil

    if shutil.which("espeak-ng") is None:
        return None
    replies = reply_paths(world, split)
    texts = sorted({r["transcript"] for r in read_jsonl(world / "speech.jsonl") if r["path"] in replies})
    if not texts:
        return None
    cases = [(t, ds, dp) for ds, dp in FRESH_JITTERS for t in texts]
    hyps = judge.transcribe([synthesize(t, ASSISTANT_VOICE, speed_jitter=ds, pitch_jitter=dp) for t, ds, dp in cases])
    wrong = [{"ref": t, "hyp": h, "speed": ds, "pitch": dp} for (t, ds, dp), h in zip(cases, hyps) if h != t]
    return {"sentences": len(texts), "renditions": len(cases), "exact": round(1 - len(wrong) / len(cases), 5),
            "wer": round(wer([t for t, _, _ in cases], hyps), 5), "examples_of_errors": wrong[:10]}


def measure_image(judge: ImageJudge, world: Path, split: str, limit: int | None = None) -> dict[str, JSONValue]:
    rows = [r for r in read_jsonl(world / "images.jsonl") if r["split"] == split][:limit]
    if not rows:
        raise InputError(f"{world}: no {split} images in images.jsonl")
    reads = judge.read_files([world / r["path"] for r in rows])
    ok = {k: [reads[i][k] == r["attrs"][k] for i, r in enumerate(rows)] for k in ATTRIBUTE_NAMES}
    all_ok = [all(ok[k][i] for k in ATTRIBUTE_NAMES) for i in range(len(rows))]
    held = [i for i, r in enumerate(rows) if r["heldout_combo"]]
    return {
        "split": split, "images": len(rows),
        "accuracy": {**{k: round(sum(v) / len(v), 5) for k, v in ok.items()}, "all": round(sum(all_ok) / len(rows), 5)},
        "all_correct_heldout_combos": round(sum(all_ok[i] for i in held) / len(held), 5) if held else None,
    }


def _stress(images: list, kind: str) -> list:
    """Corruptions stronger than (blur, down/up) or outside (JPEG q20 is at the judge's training range's low
    end) what the image judge mostly trained on, for a robustness figure."""
    import io

    from PIL import Image, ImageFilter

    out = []
    for im in images:
        if kind == "jpeg_q20":
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=20)
            out.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        elif kind == "blur_2px":
            out.append(im.filter(ImageFilter.GaussianBlur(2.0)))
        elif kind == "down_up_16px":
            out.append(im.resize((16, 16), Image.Resampling.BOX).resize((64, 64), Image.Resampling.BILINEAR))
        else:
            raise ValueError(kind)
    return out


def measure_image_stress(judge: ImageJudge, world: Path, split: str) -> dict[str, float]:
    """All-correct rate of the judge on ``split`` images after each stress corruption."""
    from PIL import Image

    rows = [r for r in read_jsonl(world / "images.jsonl") if r["split"] == split]
    images = [Image.open(world / r["path"]).convert("RGB") for r in rows]
    result = {}
    for kind in ("jpeg_q20", "blur_2px", "down_up_16px"):
        reads = judge.read(_stress(images, kind))
        result[kind] = round(sum(rd == r["attrs"] for rd, r in zip(reads, rows)) / len(rows), 5)
    return result


def measure_judges(world: str | Path, judges: str | Path | None, split: str = "test") -> dict[str, JSONValue]:
    world = Path(world)
    speech_dir = Path(judges) / "speech" if judges else None
    image_dir = Path(judges) / "image" if judges else None
    speech_judge = SpeechJudge.load(speech_dir)
    return {
        "speech": measure_speech(speech_judge, world, split),
        "speech_fresh_replies": measure_fresh_replies(speech_judge, world, split),
        "image": measure_image(ImageJudge.load(image_dir), world, split),
        "image_all_correct_under_stress": measure_image_stress(ImageJudge.load(image_dir), world, split),
    }
