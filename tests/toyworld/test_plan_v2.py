"""The version-2 plan: what the test split holds out never reaches training or validation, and every record's
metadata says what it holds."""

import collections
import re

import pytest

from aromni.toyworld import grammar_v2 as G
from aromni.toyworld import voices
from aromni.toyworld.attributes import ImageAttrs
from aromni.toyworld.evaluation.metrics import read_attributes
from aromni.toyworld.grammar import normalize
from aromni.toyworld.lexicon import load_lexicon
from aromni.toyworld.plan_v2 import META_KEYS, plan_world_v2, record_texts
from aromni.toyworld.records import validate
from aromni.toyworld.sizes import SIZES_V2, TASKS
from aromni.toyworld.splits import HELDOUT_KINDS, SPLITS, heldout_kinds, heldout_pairs
from aromni.toyworld.voices import (
    ASSISTANT_VOICE,
    FAMILY_VARIANTS,
    FLITE_VOICES,
    TEST_VARIANTS,
    TRAIN_VARIANTS,
    family_voices,
    flite_voices,
)
from aromni.toyworld.voices import test_voices as fixed_test_voices

SIZE = SIZES_V2["small"]


@pytest.fixture(scope="module")
def plan():
    return plan_world_v2(SIZE, seed=0)


def _texts(record):
    return [normalize(t) for t in record_texts(record["turns"])]


def _heldout_phrasing_in(text, book, patterns):
    """Does ``text`` (or a sentence of a text document) use a held-out frame, question or synonym?"""
    # instructions end with ":" or ".", text documents join sentences with "."
    sentences = [normalize(s) for s in re.split(r"[.:]", text) if s.strip()] + [normalize(text)]
    for s in sentences:
        if any(re.search(rf"\b{p}\b", s) for p in book.heldout_synonyms.values()):
            return True
        if s in book.heldout_questions.values() or s in book.heldout_followups.values():
            return True
        if any(p.match(s) for p in patterns):
            return True
    return False


def _patterns(book):
    return ([G.frame_pattern(f) for f in book.heldout_caption_frames]
            + [G.frame_pattern(f, request=True) for f in book.heldout_draw_frames])


def test_same_seed_same_plan_other_seed_differs(plan):
    again = plan_world_v2(SIZE, seed=0)
    assert again.records == plan.records
    assert [j.spec for j in again.images] == [j.spec for j in plan.images]
    def clips(p):
        return [(j.text, j.voice, j.augment) for j in p.speech]

    assert clips(again) == clips(plan)
    other = plan_world_v2(SIZE, seed=1)
    assert other.records["train"] != plan.records["train"] and other.heldout_words != plan.heldout_words


def test_records_valid_counted_and_every_meta_key_present(plan):
    for split in SPLITS:
        counts = collections.Counter(r["task"] for r in plan.records[split])
        assert counts == {t: SIZE.records[t][split] for t in TASKS}
        for r in plan.records[split]:
            validate(r)
            meta = r["meta"]
            assert set(META_KEYS) <= set(meta), r["id"]
            assert meta["heldout_combo"] in (None, *HELDOUT_KINDS)
            assert meta["sentence"] in (None, "random", "grammar", "exchange")
            has_speech = any(s["type"] == "speech" for t in r["turns"] for s in t["segments"])
            assert (meta["sentence"] is not None) == has_speech, r["id"]
            user_speech = any(s["type"] == "speech" and s["voice"] != ASSISTANT_VOICE.id
                              for t in r["turns"] for s in t["segments"])
            assert (meta["voice_kind"] is not None) == user_speech
            assert meta["heldout_voice"] == (split == "test" and user_speech)
            if split == "test":
                assert meta["voice_kind"] in (None, "heldout", "family", "synth") and not meta["augmented"]
            else:
                assert meta["voice_kind"] in (None, "train")
                assert not (meta["heldout_combo"] or meta["heldout_words"] or meta["heldout_phrasing"])


def test_no_heldout_word_outside_test_and_half_the_test_sequences_have_one(plan):
    held = set(plan.heldout_words)
    assert 100 <= len(held) <= 160 and not held & G.grammar_words()
    lexicon = set(load_lexicon().words)
    # every lexicon word but the attribute words is either a training word or a held-out one
    assert set(plan.heldout_words) | set(plan.train_words) == lexicon - G.attribute_words()
    for split in SPLITS:
        for r in plan.records[split]:
            words = {w for t in _texts(r) for w in t.split()}
            assert sorted(words & held) == r["meta"]["heldout_words"], r["id"]
    for j in plan.speech:
        if j.split != "test":
            assert not set(j.text.split()) & held, j.text
    randoms = [r for r in plan.records["test"]
               if r["task"] in ("asr", "tts") and r["meta"]["sentence"] == "random"]
    share = sum(bool(r["meta"]["heldout_words"]) for r in randoms) / len(randoms)
    assert 0.35 <= share <= 0.65


def test_no_heldout_phrasing_outside_test_and_meta_marks_it_in_test(plan):
    book = plan.phrasebook
    patterns = _patterns(book)
    for split in ("train", "validation"):
        for r in plan.records[split]:
            for text in record_texts(r["turns"]):
                assert not _heldout_phrasing_in(text, book, patterns), (r["id"], text)
    marked = [r for r in plan.records["test"] if r["meta"]["heldout_phrasing"]]
    assert len(marked) > 50
    for r in plan.records["test"]:
        found = any(_heldout_phrasing_in(t, book, patterns) for t in record_texts(r["turns"]))
        assert found == r["meta"]["heldout_phrasing"], (r["id"], _texts(r))
    # held-out phrasings reach the image prompts and requests of the test split
    assert {r["task"] for r in marked} >= {"t2i", "s2i", "caption", "chat_image", "vqa_text", "asr"}


def test_no_heldout_combination_in_training_images_and_half_of_test_images(plan):
    pairs = heldout_pairs(0)
    assert [len(pairs[k]) for k in HELDOUT_KINDS] == [6, 4, 5]
    by_split = collections.defaultdict(list)
    for job in plan.images:
        kinds = heldout_kinds(job.spec.attrs, pairs)
        assert kinds == ([job.heldout_kind] if job.heldout_kind else [])
        if job.split != "test":
            assert not kinds, job
        by_split[job.split].append(job)
    test = by_split["test"]
    assert sum(j.heldout_combo for j in test) == round(len(test) / 2)
    assert set(collections.Counter(j.heldout_kind for j in test if j.heldout_kind)) == set(HELDOUT_KINDS)
    image_kind = {j.path: j.heldout_kind for j in plan.images}
    for split in SPLITS:
        for r in plan.records[split]:
            paths = [s["path"] for t in r["turns"] for s in t["segments"] if s["type"] == "image"]
            if paths:
                assert r["meta"]["heldout_combo"] == image_kind[paths[0]]
                job = next(j for j in plan.images if j.path == paths[0])
                assert r["meta"]["image"] == job.spec.attrs.to_dict()


def test_voices_are_fresh_in_training_and_fixed_and_unseen_in_test(plan):
    test_ids = {v.id: "heldout" for v in fixed_test_voices()} | {v.id: "family" for v in family_voices()}
    test_ids |= {v.id: "synth" for v in flite_voices()}
    train_speakers, augmented, user_clips = set(), 0, 0
    for j in plan.speech:
        if j.voice == ASSISTANT_VOICE:
            assert j.voice_kind is None and not j.augment
            continue
        user_clips += j.split != "test"
        if j.split == "test":
            assert test_ids[j.voice.id] == j.voice_kind and not j.augment
        else:
            assert j.voice_kind == "train" and j.voice.engine == "espeak-ng"
            assert j.voice.variant in TRAIN_VARIANTS
            assert j.voice.variant not in TEST_VARIANTS + FAMILY_VARIANTS + FLITE_VOICES
            train_speakers.add(j.voice.id)
            augmented += j.augment
    assert len(train_speakers) > 1000
    assert 0.4 <= augmented / user_clips <= 0.6
    kinds = collections.Counter(r["meta"]["voice_kind"] for r in plan.records["test"])
    assert kinds["heldout"] > kinds["family"] > 0
    assert (kinds["synth"] > 0) == bool(flite_voices())


def test_speech_mix_random_grammar_exchange_and_users_say_answers(plan):
    asr = [r for r in plan.records["train"] if r["task"] == "asr"]
    mix = collections.Counter(r["meta"]["sentence"] for r in asr)
    assert abs(mix["random"] / len(asr) - 0.5) < 0.06 and abs(mix["grammar"] / len(asr) - 0.3) < 0.06
    answers = {a for t in (G.IMAGE_QUESTIONS, G.FOLLOWUP_QUESTIONS) for _, a in t.values()}
    prefixes = {a.split("{")[0] for a in answers if not a.startswith("{")}
    said = [r["turns"][0]["segments"][1]["transcript"] for r in asr if r["meta"]["sentence"] == "exchange"]
    assert any(s.startswith(p) for s in said for p in prefixes if p.strip())
    for r in asr:
        if r["meta"]["sentence"] == "random":
            n = len(r["turns"][1]["segments"][0]["text"].split())
            assert 3 <= n <= 8
            assert not set(r["turns"][1]["segments"][0]["text"].split()) & G.attribute_words()


def test_no_training_text_describes_a_heldout_combination(plan):
    """Every training sentence that names all five attributes (as the caption parser reads them) names a
    combination training may use."""
    pairs, described = heldout_pairs(0), 0
    for split in ("train", "validation"):
        for r in plan.records[split]:
            for text in record_texts(r["turns"]):
                for sentence in re.split(r"[.:]", text):
                    read = read_attributes(sentence)
                    if all(read.values()):
                        described += 1
                        assert not heldout_kinds(ImageAttrs(**read), pairs), (r["id"], sentence)
    assert described > 1000


def test_without_flite_the_test_split_uses_the_other_heldout_voices(monkeypatch):
    monkeypatch.setattr(voices, "flite_voices", lambda: [])
    plan = plan_world_v2(SIZES_V2["smoke"], seed=0)
    assert not plan.flite
    kinds = collections.Counter(r["meta"]["voice_kind"] for r in plan.records["test"])
    assert kinds["synth"] == 0 and kinds["heldout"] > 0
    assert all(j.voice.engine == "espeak-ng" for j in plan.speech)
