"""Whisper's English normaliser (through transformers) on hand-written cases, and WER counts against hand counts."""

from __future__ import annotations

import math

import pytest

from aromni.errors import InputError
from aromni.evaluation.judges import char_errors, normalize_english, wer_from_counts, word_errors

pytest.importorskip("transformers")


@pytest.mark.parametrize("text, expected", [
    ("Hello, WORLD!", "hello world"),
    ("[NOISE] the cat (laughs) sat <unk>", "the cat sat"),
    ("Um, I won't go, uh, mr Smith.", "i will not go mister smith"),
    ("twenty one", "21"),
    ("two thousand and nine", "2009"),
    ("It costs twenty dollars", "it costs $20"),
    ("café   naïve", "cafe naive"),
    ("  ", ""),
])
def test_normalize_english(text, expected):
    assert normalize_english(text) == expected


def test_spelling_table_applies_only_when_given():
    assert normalize_english("The colour grey") == "the colour grey"
    assert normalize_english("The colour grey", spelling={"colour": "color", "grey": "gray"}) == "the color gray"


def test_word_errors_match_hand_counts():
    refs = ["The cat sat on the mat.", "A quick test", "hello world", "nothing here"]
    hyps = ["the cat sat on a mat", "quick test please", "Hello, world!", ""]
    # 1 substitution (the -> a); 1 deletion (a) + 1 insertion (please); 0 after normalisation; 2 deletions.
    assert word_errors(refs, hyps) == (1 + 2 + 0 + 2, 6 + 3 + 2 + 2)
    assert word_errors(["[noise]"], ["two words"]) == (2, 0)  # an empty reference: every word an insertion
    errors, words = word_errors(refs[:2], hyps[:2])
    more = word_errors(refs[2:], hyps[2:])
    assert wer_from_counts(errors + more[0], words + more[1]) == pytest.approx(5 / 13)


def test_wer_from_counts_and_bad_lengths():
    assert wer_from_counts(3, 12) == 0.25
    assert math.isnan(wer_from_counts(0, 0))
    with pytest.raises(InputError, match="2 references but 1 hypotheses"):
        word_errors(["a", "b"], ["a"])


def test_char_errors_match_hand_counts():
    # "the cat" vs "the bat": 1 substitution over 7 characters (the space counts); punctuation/case normalised away
    assert char_errors(["The cat."], ["the bat"]) == (1, 7)
    # "kitten" -> "sitting": k->s, e->i, +g = 3 edits over 6 characters
    assert char_errors(["kitten", "ab"], ["sitting", ""]) == (3 + 2, 6 + 2)
    assert char_errors(["[noise]"], ["hi"]) == (2, 0)
    with pytest.raises(InputError, match="1 references but 0 hypotheses"):
        char_errors(["a"], [])
