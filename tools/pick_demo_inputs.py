"""Pick the demo inputs (``src/aromni/toyworld/assets/demo_inputs``) from a built world's test split.

    python tools/pick_demo_inputs.py runs/toy/world src/aromni/toyworld/assets/demo_inputs

Each input is the first test record (in file order) that fits its role, whose clip lasts at most 3 s (the
inputs ship in the package) and that the world's own judges read exactly, so the demo's table can say what
each input holds:

* ``asr``: an ASR clip of a held-out voice reading a grammar sentence;
* ``s2i``: a spoken draw request of a held-out voice whose words name all five attributes;
* ``question``: a spoken question about an image (VQA with a spoken answer), and that image;
* ``followup``: the spoken follow-up question of a chat about a drawn image.

The clips and the image are copied, and ``inputs.json`` says where each came from. Refuses to overwrite an
``OUT`` that holds files other than a previous pick.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from aromni.toyworld.attributes import WORLD_VERSION
from aromni.toyworld.evaluation.metrics import read_attributes
from aromni.toyworld.evaluation.prompts import reference_segment
from aromni.toyworld.judges.image import ImageJudge
from aromni.toyworld.judges.speech import SpeechJudge
from aromni.toyworld.judges.store import speech_judge_dir
from aromni.toyworld.records import WorldRecord as Record
from aromni.toyworld.records import iter_records
from aromni.utils.io import atomic_write_json

MAX_CLIP_BYTES = 16_000 * 2 * 3 + 44  # 3 s of 16 kHz 16-bit mono WAV
FILES = {"asr.wav", "s2i.wav", "question.wav", "followup.wav", "image.png", "inputs.json"}


def _speech(rec: Record, turn: int = 0) -> dict:
    return reference_segment(rec, turn, "speech")


def _first(world: Path, task: str, fits: Callable[[Record], bool], heard: Callable[[Record], bool]) -> Record:
    for rec in iter_records(world, "test"):
        if rec["task"] == task and fits(rec) and heard(rec):
            return rec
    raise SystemExit(f"no {task} test record in {world} fits its demo role")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("world", type=Path, help="a built toy world (version 2), e.g. runs/toy/world")
    ap.add_argument("out", type=Path, help="the demo inputs folder to write")
    args = ap.parse_args(argv)
    manifest = json.loads((args.world / "manifest.json").read_text())
    version = int(manifest.get("version", 1))
    if version != WORLD_VERSION:
        raise SystemExit(f"{args.world} is a version-{version} world; the demo inputs come from version "
                         f"{WORLD_VERSION}")
    if args.out.exists() and {p.name for p in args.out.iterdir()} - FILES:
        raise SystemExit(f"{args.out} holds other files; pass an empty folder or a previous pick")
    judge, image_judge = SpeechJudge.load(speech_judge_dir(version)), ImageJudge.load()

    def heard(turn: int) -> Callable[[Record], bool]:
        def check(rec: Record) -> bool:
            seg = _speech(rec, turn)
            if (args.world / seg["path"]).stat().st_size > MAX_CLIP_BYTES:
                return False
            return judge.transcribe_files([args.world / seg["path"]]) == [seg["transcript"]]
        return check

    def held(rec: Record) -> bool:
        return rec["meta"]["heldout_voice"] and rec["meta"]["voice_kind"] == "heldout"

    asr = _first(args.world, "asr", lambda r: held(r) and r["meta"]["sentence"] == "grammar", heard(0))
    s2i = _first(args.world, "s2i", lambda r: held(r) and read_attributes(_speech(r)["transcript"]) ==
                 r["meta"]["image"], heard(0))

    def image_read(rec: Record) -> bool:
        img = reference_segment(rec, 0, "image")
        return image_judge.read_files([args.world / img["path"]]) == [rec["meta"]["image"]]

    question = _first(args.world, "vqa_speech", lambda r: held(r) and image_read(r), heard(0))
    followup = _first(args.world, "chat_image", held, heard(2))
    picks = {"asr": (asr, 0), "s2i": (s2i, 0), "question": (question, 0), "followup": (followup, 2)}

    args.out.mkdir(parents=True, exist_ok=True)
    speech = {}
    for role, (rec, turn) in picks.items():
        seg = _speech(rec, turn)
        shutil.copyfile(args.world / seg["path"], args.out / f"{role}.wav")
        entry = {"file": f"{role}.wav", "transcript": seg["transcript"], "voice": seg["voice"], "record": rec["id"]}
        if role == "s2i":
            entry["attributes"] = rec["meta"]["image"]
        if role in ("question", "followup"):
            entry["question_attribute"] = rec["meta"]["question_attribute"]
        speech[role] = entry
    img = reference_segment(question, 0, "image")
    shutil.copyfile(args.world / img["path"], args.out / "image.png")
    about = (f"Demo inputs for `aromni demo`: files copied from the test split of the version-{version} toy world "
             "that `make toy` builds (configs/toyworld/full.yaml, seed 0), picked by tools/pick_demo_inputs.py: "
             "for each role the first test record with a clip of at most 3 s that the world's judges read exactly "
             "(the image too). Speech is from held-out voices (never heard in training).")
    atomic_write_json(args.out / "inputs.json", {
        "about": about, "speech": speech,
        "image": {"file": "image.png", "source": img["path"], "record": question["id"],
                  "attributes": question["meta"]["image"]}})
    print(json.dumps(speech, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
