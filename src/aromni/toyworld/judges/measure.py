"""Score the judges on a world's ground truth: speech WER (overall, held-out voices, per voice, spoken replies) and
image accuracy per attribute plus all-correct. :func:`measure_speech_heldout` scores the speech judge without a
world, on fresh speech it never trained on: held-out espeak-ng speakers, the Klatt family, flite, the assistant
voice, and the shipped codec's round trip of those clips.

The assistant voice has no jitter, so a test-split reply whose sentence also occurs in training ("it is pink") is
the very clip the judge trained on. ``measure_fresh_replies`` therefore also reads new renditions of the split's
reply sentences (the assistant voice at other speeds and pitches), which no training clip matches."""

from __future__ import annotations

import collections
import random
from pathlib import Path

import numpy as np
import torch

from aromni.bundle import Bundle
from aromni.errors import InputError
from aromni.toyworld.attributes import ATTRIBUTE_NAMES
from aromni.toyworld.demo import find_bundle
from aromni.toyworld.judges.image import ImageJudge
from aromni.toyworld.judges.speech import SpeechJudge, snap_text
from aromni.toyworld.judges.speech_data import PoolSettings, grammar_sentence, reply_paths, training_text
from aromni.toyworld.judges.store import speech_judge_dir, world_version
from aromni.toyworld.judges.wer import wer
from aromni.toyworld.lexicon import load_lexicon, random_sequence
from aromni.toyworld.records import read_jsonl
from aromni.toyworld.voices import (
    ACCENTS,
    ASSISTANT_VOICE,
    TEST_VARIANTS,
    TRAIN_PITCH,
    TRAIN_SPEED,
    Voice,
    family_voices,
    flite_voices,
    synthesize,
    test_voices,
)
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
    speech_dir = Path(judges) / "speech" if judges else speech_judge_dir(world_version(world))
    image_dir = Path(judges) / "image" if judges else None
    speech_judge = SpeechJudge.load(speech_dir)
    return {
        "speech": measure_speech(speech_judge, world, split),
        "speech_fresh_replies": measure_fresh_replies(speech_judge, world, split),
        "image": measure_image(ImageJudge.load(image_dir), world, split),
        "image_all_correct_under_stress": measure_image_stress(ImageJudge.load(image_dir), world, split),
    }


# --- the speech judge on speech it never trained on (no world needed) ----------------------------------------


def training_texts(judge: SpeechJudge) -> set[str]:
    """The texts of the judge's training pool, regenerated from the settings saved with it (empty if unknown)."""
    pool = judge.metrics.get("pool")
    if not isinstance(pool, dict):
        return set()
    s = PoolSettings(**pool)
    return {training_text(random.Random(f"speech-judge-pool-{s.seed}-{i}"), s.grammar_fraction)
            for i in range(s.clips)}


def heldout_texts(n_random: int, n_grammar: int, seed: str, exclude: set[str]) -> list[tuple[str, str]]:
    """``[(kind, text)]``: ``n_random`` random word sequences over the lexicon (3-8 words) and ``n_grammar`` grammar
    sentences, none of them in ``exclude`` (the judge's training texts)."""
    rng = random.Random(seed)
    words = load_lexicon().words
    out: list[tuple[str, str]] = []
    seen = set(exclude)
    for kind, n, draw in (("random", n_random, lambda: random_sequence(words, rng, 3, 8)),
                          ("grammar", n_grammar, lambda: grammar_sentence(rng))):
        for _ in range(n * 50):
            if sum(k == kind for k, _ in out) == n:
                break
            t = draw()
            if t not in seen:
                seen.add(t)
                out.append((kind, t))
    return out


def _random_test_voice(rng: random.Random, i: int) -> Voice:
    """A held-out speaker at a random training-range pitch and speed (wider than the fixed test voices')."""
    return Voice(f"heldout-{i}", rng.choice(ACCENTS), TEST_VARIANTS[i % len(TEST_VARIANTS)],
                 rng.randint(*TRAIN_PITCH), rng.randint(*TRAIN_SPEED))


def heldout_speech_sets(judge: SpeechJudge, n_random: int = 120,
                        n_grammar: int = 60) -> dict[str, list[tuple[str, str, np.ndarray]]]:
    """Fresh clips per slice, ``{slice: [(kind, text, wav [T])]}``, each reading new random word sequences and new
    grammar sentences (none of the judge's training texts):

    - ``test_voices``: the world's fixed unseen speakers (:func:`~aromni.toyworld.voices.test_voices`);
    - ``test_variants_wide``: the same variants at random pitch 15-85 and speed 140-230 wpm;
    - ``klatt``: the held-out voice family (:func:`~aromni.toyworld.voices.family_voices`);
    - ``flite``: the held-out synthesizer (:func:`~aromni.toyworld.voices.flite_voices`; absent without flite);
    - ``assistant``: the assistant voice."""
    exclude = training_texts(judge)
    rng = random.Random("speech-judge-heldout-voices")
    speakers: dict[str, list[Voice]] = {
        "test_voices": test_voices(), "test_variants_wide": [_random_test_voice(rng, i) for i in range(60)],
        "klatt": family_voices(), "flite": [v for v in flite_voices() if v.variant != "kal"],  # kal: kal16 at 8 kHz
        "assistant": [ASSISTANT_VOICE]}
    sets: dict[str, list[tuple[str, str, np.ndarray]]] = {}
    for name, voices in speakers.items():
        if voices:
            texts = heldout_texts(n_random, n_grammar, f"speech-judge-heldout-{name}", exclude)
            sets[name] = [(kind, text, synthesize(text, voices[i % len(voices)]))
                          for i, (kind, text) in enumerate(texts)]
    return sets


def _scores(judge: SpeechJudge, items: list[tuple[str, str, np.ndarray]], wavs: list[np.ndarray] | None = None
            ) -> dict[str, JSONValue]:
    """WER of ``judge`` on ``items`` (all, random sequences, grammar sentences). A character judge is scored raw
    and lexicon-snapped (``*_snapped``); a phoneme judge's words always come from its pronunciation table, so it
    has one figure of each, marked ``"word_source": "pronunciation lookup"``."""
    refs = [t for _, t, _ in items]
    raw = judge.transcribe(wavs if wavs is not None else [w for _, _, w in items])
    snapped = None if judge.cfg.pronunciations else [snap_text(h) for h in raw]
    out: dict[str, JSONValue] = {"clips": len(items), "words": sum(len(r.split()) for r in refs),
                                 "wer": round(wer(refs, raw), 5)}
    if snapped is None:
        out["word_source"] = "pronunciation lookup"
    else:
        out["wer_snapped"] = round(wer(refs, snapped), 5)
    for kind in ("random", "grammar"):
        idx = [i for i, (k, _, _) in enumerate(items) if k == kind]
        if idx:
            out[f"wer_{kind}"] = round(wer([refs[i] for i in idx], [raw[i] for i in idx]), 5)
            if snapped is not None:
                out[f"wer_{kind}_snapped"] = round(wer([refs[i] for i in idx], [snapped[i] for i in idx]), 5)
    out["examples_of_errors"] = [{"ref": r, "hyp": h} for r, h in zip(refs, raw) if r != h][:8]
    return out


def measure_speech_heldout(judge: SpeechJudge, *, n_random: int = 120, n_grammar: int = 60,
                           bundle: str | Path | None = None) -> dict[str, JSONValue]:
    """WER (raw, and with lexicon snapping) of ``judge`` on each slice of :func:`heldout_speech_sets`, and on the
    ``test_voices`` and ``assistant`` clips after the speech codec of ``bundle`` (default: the shipped toy bundle;
    skipped when there is none): the reference that TTS output is scored against."""
    sets = heldout_speech_sets(judge, n_random, n_grammar)
    report: dict[str, JSONValue] = {name: _scores(judge, items) for name, items in sets.items()}
    path = Path(bundle) if bundle is not None else find_bundle()
    if path is not None:
        codec = Bundle.load(path).speech
        if codec is None:
            raise InputError(f"{path}: the bundle has no speech tokenizer", "pass a bundle with a speech codec")
        for name in ("test_voices", "assistant"):
            with torch.inference_mode():
                wavs = [codec.decode(codec.encode(torch.from_numpy(w)[None]))[0].float().numpy()
                        for _, _, w in sets[name]]
            report[f"{name}_codec"] = _scores(judge, sets[name], wavs)
    return report
