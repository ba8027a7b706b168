"""Metric functions of the eval suite against hand computations."""

from __future__ import annotations

import math
import random

import pytest

from aromni.toyworld import grammar, grammar_v2
from aromni.toyworld.attributes import ImageAttrs
from aromni.toyworld.evaluation import metrics as M
from aromni.toyworld.evaluation.targets import format_target, format_value, passes, summary_rows

TRUTH = {"shape": "circle", "color": "red", "size": "big", "position": "top left", "background": "white"}


def test_parse_every_caption_template():
    a = ImageAttrs(**TRUTH)
    for caption in M.reference_captions(TRUTH):
        assert M.read_attributes(caption) == TRUTH, caption
    # every template appears once, filled by the grammar's own filler
    assert len(set(M.reference_captions(TRUTH))) == len(grammar.CAPTION_TEMPLATES)
    rng = random.Random(0)
    for _ in range(50):
        assert M.read_attributes(grammar.caption(a, rng)) == TRUTH


def test_v2_reference_captions_read_back_and_cover_every_frame():
    frames = [f for group in grammar_v2.CAPTION_FRAMES.values() for f in group]
    for truth, preps in ((TRUTH, grammar_v2.CORNER_PREPOSITIONS),
                         ({**TRUTH, "position": "middle"}, grammar_v2.MIDDLE_PREPOSITIONS)):
        refs = M.reference_captions(truth, version=2)
        assert len(set(refs)) == len(refs) == len(frames) * len(preps)
        for caption in refs:
            assert M.read_attributes(caption) == truth, caption
    # version 1 keeps its own six templates
    assert len(M.reference_captions(TRUTH, version=1)) == len(grammar.CAPTION_TEMPLATES)


def test_parse_positions_and_conflicts():
    assert M.parse_attributes("a small star in the middle on gray")["position"] == ["middle"]
    assert M.parse_attributes("at the bottom right")["position"] == ["bottom right"]
    # two colours: colour unreadable, the rest still read
    got = M.read_attributes("a big red blue circle at the top left on black")
    assert got == {"shape": "circle", "color": None, "size": "big", "position": "top left", "background": "black"}
    # repeats of the same value are one value; punctuation and case do not matter
    assert M.read_attributes("Red, RED circle!")["color"] == "red"
    # "left" alone is not a position of the world
    assert M.parse_attributes("the opposite of left is right")["position"] == []
    ok = M.attributes_correct("a big red circle at the top right on a white background", TRUTH)
    assert ok == {"shape": True, "color": True, "size": True, "position": False, "background": True}


@pytest.mark.parametrize("attribute,answer,expected", [
    ("color", "it is red", True),
    ("color", "it is blue", False),
    ("color", "it is red or blue", False),       # two colours: not an answer
    ("color", "it is a red square", True),       # other attributes do not matter
    ("shape", "it is a circle", True),
    ("shape", "i drew a square", False),
    ("size", "i made it big", True),
    ("position", "i put it at the top left", True),
    ("position", "it is at the top right", False),
    ("background", "the background is white", True),
    ("background", "a black background", False),
    ("describe", "a big red circle at the top left on white", True),
    ("describe", "a big red circle at the top left on black", False),
    ("color", "", False),
])
def test_answer_rules(attribute, answer, expected):
    assert M.answer_correct(attribute, answer, TRUTH) is expected


def test_answer_rule_matches_the_grammar_answers():
    a = ImageAttrs(**TRUTH)
    for attr, (_, template) in {**grammar.IMAGE_QUESTIONS, **grammar.FOLLOWUP_QUESTIONS}.items():
        answer = grammar.fill_template(template, a)
        assert M.answer_correct(attr, answer, TRUTH), (attr, answer)
    with pytest.raises(ValueError):
        M.answer_correct("weight", "it is heavy", TRUTH)


def test_exchange_exact_match():
    assert M.exact_match("yes pink is a color", "Yes, pink is a color.")
    assert not M.exact_match("yes pink is a color", "yes pink is color")


def test_corpus_wer_is_total_edits_over_total_words():
    refs, hyps = ["a b c", "d e"], ["a x c", "d e f"]
    # 1 substitution + 1 insertion over 5 reference words (not the mean of 1/3 and 1/2)
    assert M.corpus_wer(refs, hyps) == pytest.approx(2 / 5)
    assert M.corpus_wer(["a b c", "d e"], ["", "d e"]) == pytest.approx(3 / 5)
    assert M.corpus_wer(["Hello, World"], ["hello world"]) == 0.0  # normalised first
    assert M.corpus_wer([], []) is None
    with pytest.raises(ValueError):
        M.corpus_wer(["a"], [])


def test_corpus_cer_is_total_character_edits_over_total_characters():
    # "cat" -> "cut" (1 substitution) and "dog" -> "dogs" (1 insertion) over 3 + 3 reference characters
    assert M.corpus_cer(["cat", "dog"], ["cut", "dogs"]) == pytest.approx(2 / 6)
    assert M.corpus_cer(["Red, Star"], ["red star"]) == 0.0  # normalised first
    assert M.corpus_cer([], []) is None
    with pytest.raises(ValueError):
        M.corpus_cer(["a"], ["a", "b"])


def test_attribute_accuracy():
    other = dict(TRUTH, color="blue")
    acc = M.attribute_accuracy([TRUTH, other, None], [TRUTH, TRUTH, TRUTH])
    assert acc["all"] == pytest.approx(1 / 3)
    assert acc["color"] == pytest.approx(1 / 3)
    assert acc["shape"] == pytest.approx(2 / 3)
    assert M.attribute_accuracy([], [])["all"] is None


def test_cider_hand_computed():
    # Two images, one reference each. idf = log(2) for every n-gram (each occurs in one image's references).
    # Image B is matched exactly: cosine 1 for n = 1..4, no length penalty -> 10 * mean(1, 1, 1, 1) = 10.
    # Image A "a b x y" vs "a b c d": unigrams share a, b of 4 -> 2/4; bigrams share "a b" of 3 -> 1/3;
    # no shared 3- or 4-grams; equal lengths -> 10 * (1/2 + 1/3) / 4 = 2.0833...
    score, per = M.cider([["a b c d"], ["e f g h"]], ["a b x y", "e f g h"])
    assert per[1] == pytest.approx(10.0)
    assert per[0] == pytest.approx(10 * (0.5 + 1 / 3) / 4)
    assert score == pytest.approx((per[0] + per[1]) / 2)
    assert M.cider([["a b"]], ["a b"]) is None  # idf needs at least two images
    # several references are averaged: a perfect match of one of two refs gives less than 10
    _, per = M.cider([["a b c d", "a b c e"], ["e f g h", "e f g h"]], ["a b c d", "e f g h"])
    assert per[1] == pytest.approx(10.0) and 0 < per[0] < 10


def test_median():
    assert M.median([3.0, None, 1.0, 2.0]) == 2.0
    assert M.median([4.0, 1.0]) == 2.5
    assert M.median([None]) is None


def test_targets_pass_fail_and_formatting():
    assert passes(0.04, ("<=", 0.05)) is True
    assert passes(0.06, ("<=", 0.05)) is False
    assert passes(0.90, (">=", 0.90)) is True
    assert passes(None, (">=", 0.9)) is None and passes(0.5, None) is None
    assert format_value(0.0512, "pct") == "5.1%"
    assert format_value(0.35, "ms") == "350 ms"
    assert format_target((">=", 0.85), "pct") == "≥ 85.0%"
    assert format_target(("<=", 5.0), "points") == "≤ 5.0 pts"


def test_summary_rows_verdicts_and_notes():
    tasks = {"asr": {"n": 10, "n_heldout_voices_new_sentences": 10, "wer_heldout_voices_new_sentences": 0.08},
             "tts": {"n": 5, "wer_generated": 0.5, "wer_resynthesized": 0.45, "gap_points": 5.0, "no_speech": 2,
                     "n_new_sentences": 5, "wer_generated_new_sentences": 0.5,
                     "wer_resynthesized_new_sentences": 0.45, "gap_points_new_sentences": 5.0},
             "caption": {"n": 4, "all_correct": 0.95}}
    rows = {r["key"]: r for r in summary_rows(tasks)}
    assert rows["asr.wer_heldout_voices_new_sentences"]["pass"] is False
    assert rows["asr.wer_synth"]["value"] is None and rows["asr.wer_synth"]["pass"] is None  # a v1 world: n/a
    assert rows["caption.all_correct"]["pass"] is True
    assert rows["t2i.cfg.all_correct"]["value"] is None and rows["t2i.cfg.all_correct"]["pass"] is None
    # a codec that loses most words leaves the gap without a verdict, and says so
    gap = rows["tts.gap_points_new_sentences"]
    assert gap["pass"] is None and "codec alone" in gap["note"] and "codec alone" in rows["tts.gap_points"]["note"]
    assert "2 of 5 replies had no speech" in rows["tts.wer_generated_new_sentences"]["note"]
    tasks["tts"]["wer_resynthesized_new_sentences"] = 0.05
    assert {r["key"]: r for r in summary_rows(tasks)}["tts.gap_points_new_sentences"]["pass"] is True
    assert not math.isnan(rows["asr.wer_heldout_voices_new_sentences"]["value"])
    # a weak judge ceiling is stated where the score is
    tasks["vqa_speech"] = {"n": 10, "accuracy": 0.5, "reference_audio_accuracy": 0.6}
    note = {r["key"]: r for r in summary_rows(tasks)}["vqa_speech.accuracy"]["note"]
    assert "reads only 60% of the recorded reference answers" in note
