"""The held-out slices of the toy-world suite: which records fall in each, and their WERs by hand."""

import pytest

from aromni.toyworld.evaluation import slices as S


def _rec(i, **meta):
    return {"id": f"r{i}", "task": "asr", "split": "test", "turns": [], "meta": meta}


RECS = [
    _rec(0, voice_kind="heldout", sentence="random", heldout_words=["zebra"]),
    _rec(1, voice_kind="heldout", sentence="grammar", heldout_words=[]),
    _rec(2, voice_kind="family", sentence="random", heldout_words=[]),
    _rec(3, voice_kind="synth", sentence="exchange", heldout_phrasing=True),
    _rec(4, heldout_voice=True),  # a version-1 record
]
REFS = ["a zebra ran", "a red circle", "one two three four", "hello there", "it is red"]
HYPS = ["a zebra run", "a red circle", "one two three", "hello there", "it is blue"]


def test_each_record_falls_in_the_right_slices():
    assert [S.voice_kind(r) for r in RECS] == ["heldout", "heldout", "family", "synth", "heldout"]
    assert [S.new_sentence(r) for r in RECS] == [True, False, True, True, False]
    assert S.indices(RECS, S.heldout_voice_new_sentence) == [0]
    assert S.heldout_words(RECS[0]) == ["zebra"] and S.heldout_words(RECS[4]) == []


def test_slice_wers_by_hand():
    got = S.wer_slices(RECS, REFS, HYPS)
    assert got["n_heldout_voices"] == 3 and got["wer_heldout_voices"] == pytest.approx(2 / 9)
    assert got["n_heldout_voices_new_sentences"] == 1 and got["wer_heldout_voices_new_sentences"] == pytest.approx(1 / 3)
    assert got["wer_family"] == pytest.approx(1 / 4) and got["wer_synth"] == 0.0
    assert got["n_heldout_words"] == 1 and got["heldout_word_recall"] == 1.0


def test_empty_slices_are_none_not_zero():
    got = S.wer_slices(RECS[4:], REFS[4:], HYPS[4:])  # a version-1 world has no new-sentence slices
    assert got["wer_heldout_voices_new_sentences"] is None and got["n_synth"] == 0
    assert got["heldout_word_recall"] is None
    assert S.word_recall([["cat", "dog"]], ["the cat sat"]) == 0.5
