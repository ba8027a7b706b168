"""The version-2 parts of a world build: its speech jobs (two engines, augmentation), indexes and manifest.

:mod:`aromni.toyworld.build` runs the jobs and assembles the directory for both versions; version 1's own
jobs, indexes and manifest stay there unchanged, so a version-1 world is byte-identical to the one the shipped
bundle was trained on.
"""

from __future__ import annotations

import collections
import random
from pathlib import Path

from aromni.toyworld.attributes import vocabulary
from aromni.toyworld.audio_augment import augment
from aromni.toyworld.grammar import normalize
from aromni.toyworld.lexicon import load_lexicon
from aromni.toyworld.plan_v2 import WorldPlanV2
from aromni.toyworld.records import dumps_jsonl
from aromni.toyworld.splits import SPLITS
from aromni.toyworld.voices import ASSISTANT_VOICE, SAMPLE_RATE, Voice, synthesize
from aromni.utils.extras import optional
from aromni.utils.io import JSONValue, atomic_path, atomic_write_text

SpeechArgs = tuple[str, str, str, dict[str, str | int], bool, str]


def speech_args(plan: WorldPlanV2, root: Path) -> list[SpeechArgs]:
    """One argument tuple per clip for :func:`speech_job` (plain data: they go to worker processes)."""
    return [(str(root), j.path, j.text, j.voice.to_dict(), j.augment, f"augment-{plan.seed}-{j.path}")
            for j in plan.speech]


def speech_job(args: SpeechArgs) -> tuple[str, float]:
    """Synthesize one clip (augmented when planned so) unless it is already there: ``(path, seconds)``."""
    sf = optional("soundfile", extra="audio", feature="writing audio")

    root, rel, text, voice, augmented, augment_seed = args
    dest = Path(root) / rel
    if dest.exists():
        return rel, sf.info(str(dest)).frames / SAMPLE_RATE
    wav = synthesize(text, Voice(**voice))
    if augmented:
        # Seeded by the clip's path, so a resumed or re-run build writes the same audio.
        wav = augment(wav, random.Random(augment_seed))
    with atomic_path(dest, suffix=".wav") as tmp:
        sf.write(str(tmp), wav, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return rel, len(wav) / SAMPLE_RATE


def write_indexes(plan: WorldPlanV2, root: Path, durations: dict[str, float]) -> None:
    """``records/{split}.jsonl``, ``images.jsonl`` and ``speech.jsonl`` of a version-2 world."""
    for split, rows in plan.records.items():
        atomic_write_text(root / "records" / f"{split}.jsonl", dumps_jsonl(rows))
    images = [{"path": j.path, "split": j.split, "attrs": j.spec.attrs.to_dict(),
               "heldout_combo": j.heldout_kind, "spec": j.spec.to_dict()} for j in plan.images]
    atomic_write_text(root / "images.jsonl", dumps_jsonl(images))
    speech = [{"path": j.path, "split": j.split, "transcript": j.text, "voice": j.voice.id,
               "role": "assistant" if j.voice.id == ASSISTANT_VOICE.id else "user",
               "voice_kind": j.voice_kind, "engine": j.voice.engine, "augmented": j.augment,
               "duration_s": round(durations[j.path], 4)}
              for j in plan.speech]
    atomic_write_text(root / "speech.jsonl", dumps_jsonl(speech))


def manifest(plan: WorldPlanV2, durations: dict[str, float]) -> dict[str, JSONValue]:
    """The version-2 manifest fields (the builder adds format, completeness, timing and tool versions)."""
    counts: dict[str, dict[str, int]] = collections.defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    for split, rows in plan.records.items():
        for r in rows:
            counts[r["task"]][split] += 1
    speech_s: collections.Counter[str] = collections.Counter()
    clips: collections.Counter[str] = collections.Counter()
    by_kind: collections.Counter[str] = collections.Counter()
    for j in plan.speech:
        speech_s[j.split] += durations[j.path]
        clips[j.split] += 1
        by_kind[f"{j.split}/{j.voice_kind or 'assistant'}{'+augmented' if j.augment else ''}"] += 1
    voices = {kind: sorted({j.voice.id for j in plan.speech if j.voice_kind == kind})
              for kind in ("heldout", "family", "synth")}
    spoken = sorted({w for j in plan.speech for w in normalize(j.text).split()})
    return {
        "seed": plan.seed,
        "size": plan.size.name,
        "records": dict(counts),
        "images": dict(collections.Counter(j.split for j in plan.images)),
        "heldout_images_test": sum(j.heldout_combo for j in plan.images),
        "heldout_images_by_kind": dict(collections.Counter(j.heldout_kind for j in plan.images
                                                           if j.heldout_kind)),
        "speech_clips": dict(clips),
        "speech_clips_by_voice": dict(sorted(by_kind.items())),
        "speech_hours": {k: round(v / 3600, 3) for k, v in speech_s.items()},
        "speech_max_s": round(max((durations[j.path] for j in plan.speech), default=0.0), 3),
        "voices": {
            "train_speakers": len({j.voice.id for j in plan.speech if j.voice_kind == "train"}),
            "test": voices["heldout"], "family": voices["family"], "synth": voices["synth"],
            "flite_installed": plan.flite,
            "assistant": ASSISTANT_VOICE.to_dict(),
        },
        "heldout_combos": {kind: [list(p) for p in pairs] for kind, pairs in plan.pairs.items()},
        "heldout_words": plan.heldout_words,
        "heldout_phrasings": plan.phrasebook.summary(),
        "lexicon": {"words": len(load_lexicon().words), "random_sequence_words": len(plan.train_words),
                    "heldout_words": len(plan.heldout_words)},
        "attributes": vocabulary(),
        "spoken_vocabulary": spoken,
        "sample_rate": SAMPLE_RATE,
        "image_size": 64,
    }
