"""The shipped lexicon: its format, no two words that sound alike, the grammar's words in it, seeded held-out
splits, and random word sequences."""

import random

import pytest

from aromni.errors import InputError
from aromni.toyworld.grammar import spoken_vocabulary
from aromni.toyworld.lexicon import load_lexicon, random_sequence


def test_the_shipped_lexicon_has_thousands_of_distinct_sounding_words_including_the_grammars():
    lex = load_lexicon()
    assert len(lex.words) == 3000 and len(set(lex.words)) == 3000
    # homophones were dropped, except among the grammar's own words (v1 says both "no" and "know")
    extra = [p for w, p in zip(lex.words, lex.phonemes) if w not in set(spoken_vocabulary())]
    assert len(set(extra)) == len(extra) and not set(extra) & {p for w, p in zip(lex.words, lex.phonemes)
                                                               if w in set(spoken_vocabulary())}
    assert set(spoken_vocabulary()) <= set(lex.words)
    assert lex.words[0] == "the"  # most frequent first


def test_split_is_seeded_disjoint_and_never_holds_out_kept_words():
    lex = load_lexicon()
    keep = set(spoken_vocabulary())
    train, held = lex.split(0, 0.05, keep)
    assert (train, held) == lex.split(0, 0.05, keep) and held != lex.split(1, 0.05, keep)[1]
    assert len(held) == 150 and not set(held) & set(train) and not set(held) & keep
    assert set(train) | set(held) == set(lex.words)
    with pytest.raises(InputError, match="heldout_fraction"):
        lex.split(0, 1.0)


def test_random_sequences_draw_from_the_given_words_with_a_frequency_skew():
    words = load_lexicon().words[:1000]
    rng = random.Random(0)
    seqs = [random_sequence(words, rng, 3, 8).split() for _ in range(2000)]
    assert all(3 <= len(s) <= 8 for s in seqs) and {w for s in seqs for w in s} <= set(words)
    drawn = [w for s in seqs for w in s]
    head, tail = set(words[:100]), set(words[-100:])
    assert sum(w in head for w in drawn) > 3 * sum(w in tail for w in drawn)
    with pytest.raises(InputError, match="no words"):
        random_sequence([], rng)


def test_a_damaged_lexicon_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "lex.tsv"
    bad.write_text("hello\tx\nBad Word\ty\n")
    with pytest.raises(InputError, match=r"lex.tsv:2: expected"):
        load_lexicon(bad)
