"""Voices: version 1 unchanged, version-2 speaker lists held out, flite and word-gap synthesis."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess

import numpy as np
import pytest

from aromni.errors import AromniError
from aromni.toyworld import voices as V

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
needs_flite = pytest.mark.skipif(shutil.which("flite") is None,
                                 reason="flite is not installed (apt-get install flite)")

SENTENCE = "the red circle is in the top left of a blue square"


def test_v1_voice_bank_unchanged():
    train, test = V.voice_bank(0)
    assert [train[0].to_dict(), train[1].to_dict(), test[0].to_dict()] == [
        {"id": "tr00", "accent": "en-gb-x-gbclan", "variant": "m6", "pitch": 45, "speed": 169},
        {"id": "tr01", "accent": "en-gb-x-rp", "variant": "miguel", "pitch": 43, "speed": 189},
        {"id": "te00", "accent": "en-gb-x-gbcwmd", "variant": "Andrea", "pitch": 65, "speed": 183},
    ]
    # The whole bank, serialised as the world manifest does: any change here changes every v1 world.
    blob = json.dumps([v.to_dict() for v in train + test]).encode()
    expected = "fbcc79589693ea0688df744fd4d8c3d75020da382d88c450983864926661583b"
    assert hashlib.sha256(blob).hexdigest() == expected
    assert V.ASSISTANT_VOICE.to_dict() == {"id": "assistant", "accent": "en-us", "variant": "m3", "pitch": 50,
                                           "speed": 190}


@needs_espeak
def test_v1_synthesis_unchanged():
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    soxr = pytest.importorskip("soxr")
    if "1.51" not in version or soxr.__version__ != "1.1.0":
        pytest.skip("the pinned hashes were taken with espeak-ng 1.51 and soxr 1.1.0")
    train, _ = V.voice_bank(0)
    expected = {
        "tr00": "e334252c4db511a1b7b27763a24628ad7ecb10b0f8259b1c30a34a215ecc9b39",
        "assistant": "22a0db88f7ad9a2d87880cd27d4dd44577f4f609b3b8e6cc70e903075fc65bd1",
    }
    for voice in (train[0], V.ASSISTANT_VOICE):
        wav = V.synthesize("the red circle is in the top left", voice, speed_jitter=3, pitch_jitter=-2)
        assert wav.dtype == np.float32
        assert hashlib.sha256(wav.tobytes()).hexdigest() == expected[voice.id]


def test_voice_dict_round_trips_and_omits_defaults():
    v1 = V.voice_bank(0)[0][0]
    assert set(v1.to_dict()) == {"id", "accent", "variant", "pitch", "speed"}
    gapped = V.Voice("x", "en-us", "m1", 50, 180, word_gap=3)
    flite = V.Voice("y", "en-us", "slt", 50, 175, engine="flite")
    assert gapped.to_dict()["word_gap"] == 3 and "engine" not in gapped.to_dict()
    assert flite.to_dict()["engine"] == "flite" and "word_gap" not in flite.to_dict()
    for voice in (v1, gapped, flite, V.train_voice(random.Random(3))):
        assert V.Voice(**voice.to_dict()) == voice
    with pytest.raises(ValueError, match="unknown speech engine"):
        V.Voice("z", "en-us", "m1", 50, 180, engine="festival")


def test_variant_lists_are_disjoint():
    groups = {"train": V.TRAIN_VARIANTS, "test": V.TEST_VARIANTS, "family": V.FAMILY_VARIANTS,
              "excluded": V.EXCLUDED_VARIANTS}
    for name, variants in groups.items():
        assert len(set(variants)) == len(variants), name
    names = list(groups)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not set(groups[a]) & set(groups[b]), (a, b)
    assert V.ASSISTANT_VOICE.variant in V.TRAIN_VARIANTS


def test_train_voices_stay_in_their_ranges_and_never_use_held_out_variants():
    rng = random.Random(0)
    drawn = [V.train_voice(rng) for _ in range(3000)]
    held_out = set(V.TEST_VARIANTS) | set(V.FAMILY_VARIANTS) | set(V.EXCLUDED_VARIANTS) | set(V.FLITE_VOICES)
    by_id: dict[str, V.Voice] = {}
    for v in drawn:
        assert v.engine == "espeak-ng"
        assert v.variant in V.TRAIN_VARIANTS and v.variant not in held_out
        assert v.accent in V.ACCENTS
        assert 15 <= v.pitch <= 85 and 140 <= v.speed <= 230 and 0 <= v.word_gap <= 6
        # The id encodes the draw: one id never names two different voices.
        assert by_id.setdefault(v.id, v) == v
    assert {v.accent for v in drawn} == set(V.ACCENTS)
    assert {v.variant for v in drawn} == set(V.TRAIN_VARIANTS)
    assert {v.word_gap for v in drawn} == set(range(7))
    assert min(v.pitch for v in drawn) == 15 and max(v.speed for v in drawn) == 230
    assert len(by_id) > 2900  # hundreds of thousands of possible speakers: repeats are rare
    # Seeded: the same rng state gives the same speakers.
    assert [V.train_voice(random.Random(7)) for _ in range(3)] == [V.train_voice(random.Random(7))] * 3


def test_held_out_voice_lists_are_fixed_and_disjoint_from_training(monkeypatch):
    tests, family = V.test_voices(), V.family_voices()
    assert tests == V.test_voices() and family == V.family_voices()
    assert [v.variant for v in tests] == list(V.TEST_VARIANTS)
    assert [v.variant for v in family] == list(V.FAMILY_VARIANTS)
    # Pinned: a world of any seed, built any day, tests on exactly these speakers.
    assert tests[0] == V.Voice("te-Gene2", "en-us", "Gene2", 34, 177)
    assert family[0] == V.Voice("fam-klatt", "en-us", "klatt", 63, 169)
    assert {v.accent for v in tests} == set(V.ACCENTS)
    held = tests + family + V.flite_voices()
    assert len({v.id for v in held}) == len(held)
    rng = random.Random(1)
    train_ids = {V.train_voice(rng).id for _ in range(500)}
    assert not train_ids & {v.id for v in held}

    monkeypatch.setattr(V.shutil, "which", lambda name: None)
    assert V.flite_voices() == []


@needs_flite
def test_flite_voices_listed_when_installed():
    voices = V.flite_voices()
    assert [v.variant for v in voices] == list(V.FLITE_VOICES)
    assert all(v.engine == "flite" and v.id.startswith("flite-") for v in voices)
    listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout.split()
    assert set(V.FLITE_VOICES) <= set(listed)


@needs_flite
@pytest.mark.parametrize("name", ["kal", "slt"])  # kal speaks at 8 kHz, slt at 16 kHz: both leave at 16 kHz
def test_flite_synthesis_gives_16khz_float32(name):
    voice = next(v for v in V.flite_voices() if v.variant == name)
    wav = V.synthesize(SENTENCE, voice)
    assert wav.dtype == np.float32 and wav.ndim == 1 and np.all(np.isfinite(wav))
    assert abs(float(np.abs(wav).max()) - V.PEAK) < 1e-4
    # 11 words at ~175 wpm: about 3 s of speech.
    assert 2.0 < wav.size / V.SAMPLE_RATE < 5.0
    slow = V.synthesize(SENTENCE, voice, speed_jitter=-60)
    assert slow.size > 1.25 * wav.size


def test_flite_missing_is_a_clean_error(monkeypatch):
    monkeypatch.setattr(V.shutil, "which", lambda name: None)
    with pytest.raises(AromniError, match="apt-get install flite"):
        V.synthesize("hello", V.Voice("flite-slt", "en-us", "slt", 50, 175, engine="flite"))


@needs_espeak
def test_espeak_word_gap_lengthens_audio():
    plain = V.Voice("a", "en-us", "m1", 50, 180)
    gapped = V.Voice("b", "en-us", "m1", 50, 180, word_gap=6)
    n0 = V.synthesize(SENTENCE, plain).size
    n1 = V.synthesize(SENTENCE, gapped).size
    # 10 word boundaries x 60 ms: about 0.6 s more.
    assert (n1 - n0) / V.SAMPLE_RATE > 0.3


@needs_espeak
def test_held_out_espeak_voices_synthesize():
    for voice in (V.test_voices()[0], V.family_voices()[0], V.train_voice(random.Random(5))):
        wav = V.synthesize("a small green star", voice)
        assert wav.dtype == np.float32 and wav.size > 0.5 * V.SAMPLE_RATE
