"""World version 2's phrasings: frames, synonyms, what is held out, and the caption parser reading it all."""

import itertools
import random

import pytest

from aromni.toyworld import grammar_v2 as G
from aromni.toyworld.attributes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES, ImageAttrs
from aromni.toyworld.evaluation.metrics import parse_attributes, read_attributes
from aromni.toyworld.grammar import INSTRUCTIONS, normalize
from aromni.toyworld.lexicon import load_lexicon


def _attrs(n=200, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        yield ImageAttrs(rng.choice(SHAPES), rng.choice(list(COLORS)), rng.choice(list(SIZES)),
                         rng.choice(list(POSITIONS)), rng.choice(list(BACKGROUNDS)))


def test_sizes_of_the_grammar():
    assert len([f for g in G.CAPTION_FRAMES.values() for f in g]) == 40
    assert len([f for g in G.DRAW_FRAMES.values() for f in g]) == 20
    assert len(set(G.all_frames())) == 60
    assert all(len(qs) >= 5 for qs, _ in G.IMAGE_QUESTIONS.values())
    questions = [q for t in (G.IMAGE_QUESTIONS, G.FOLLOWUP_QUESTIONS) for qs, _ in t.values() for q in qs]
    assert len(questions) == len(set(questions))  # a held-out question is never a training one elsewhere


def test_every_spoken_word_is_a_lexicon_word_and_modifiers_name_no_attribute():
    assert G.spoken_words() <= set(load_lexicon().words)  # so no two spoken words of the world sound alike
    instruction_words = {w for t in INSTRUCTIONS.values() for w in normalize(t).split()}
    assert G.spoken_words() | instruction_words <= G.grammar_words()
    for modifier in G.REQUEST_PREFIXES + G.REQUEST_SUFFIXES:
        assert not set(modifier.split()) & G.attribute_words()
        assert all(v is None for v in read_attributes(modifier).values())


def test_heldout_choice_is_seeded_and_about_a_fifth_of_each_word_order():
    book, again, other = G.PhraseBook(0), G.PhraseBook(0), G.PhraseBook(1)
    assert book.summary() == again.summary() and book.summary() != other.summary()
    tables = ((G.CAPTION_FRAMES, book.heldout_caption_frames), (G.DRAW_FRAMES, book.heldout_draw_frames))
    for frames, held in tables:
        for group in frames.values():
            n = len(set(group) & held)
            assert 1 <= n and abs(n - 0.2 * len(group)) <= 1
        assert 0.15 <= len(held) / sum(map(len, frames.values())) <= 0.25
    # one synonym per set, never the value's own word
    assert len(book.heldout_synonyms) == sum(len(t) for t in G.SYNONYMS.values())
    for (attr, value), form in book.heldout_synonyms.items():
        assert form in G.SYNONYMS[attr][value][1:]


def test_no_two_frames_read_alike():
    """A filled frame matches its own pattern and no other's: held-out frames are recognisable in text."""
    book, rng = G.PhraseBook(0), random.Random(3)
    patterns = {f: G.frame_pattern(f) for f in G.all_frames()}
    for frame in G.all_frames():
        for a in _attrs(20, seed=len(frame)):
            text = book._fill(frame, a, rng, allow_heldout=True, force_slot=None)
            assert [f for f, p in patterns.items() if p.match(text)] == [frame], text


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_phrasings_never_use_a_heldout_one_and_heldout_ones_always_do(seed):
    book, rng = G.PhraseBook(seed), random.Random(seed)
    held_frames = [G.frame_pattern(f) for f in book.heldout_caption_frames]
    held_requests = [G.frame_pattern(f, request=True) for f in book.heldout_draw_frames]
    held_phrases = set(book.heldout_synonyms.values())

    def uses_heldout(text, patterns):
        synonym = any(f" {s} " in f" {text} " for s in held_phrases)
        return synonym or any(p.match(text) for p in patterns)

    for a in _attrs(300, seed):
        for heldout in (False, True):
            cap = book.caption(a, rng, heldout=heldout)
            req = book.draw_request(a, rng, heldout=heldout)
            assert cap.heldout == heldout and req.heldout == heldout
            assert uses_heldout(cap.text, held_frames) == heldout, cap
            assert uses_heldout(req.text, held_requests) == heldout, req
            _, q, _ = book.image_question(a, rng, heldout=heldout)
            assert (q.text in book.heldout_questions.values()) == heldout
            _, q, _ = book.followup_question(a, rng, heldout=heldout)
            assert (q.text in book.heldout_followups.values()) == heldout


def test_the_parser_reads_every_frame_with_every_synonym():
    """The measuring instrument: every frame (held-out ones too), synonym and preposition reads right."""
    for i, frame in enumerate(G.all_frames()):
        for a in _attrs(6, seed=i):
            preps = G.MIDDLE_PREPOSITIONS if a.position == "middle" else G.CORNER_PREPOSITIONS
            for size, shape, pos, prep in itertools.product(
                    G.SYNONYMS["size"][a.size], G.SYNONYMS["shape"].get(a.shape, (a.shape,)),
                    G.SYNONYMS["position"][a.position], preps):
                text = G._article(frame.format(size=size, color=a.color, shape=shape, pos=prep.format(p=pos),
                                               bg=a.background))
                assert read_attributes(text) == a.to_dict(), text
    book, rng = G.PhraseBook(0), random.Random(0)
    for a in _attrs(300, 6):
        for heldout in (False, True):
            for phrased in (book.caption(a, rng, heldout=heldout),
                            book.draw_request(a, rng, heldout=heldout)):
                assert read_attributes(phrased.text) == a.to_dict(), phrased
            attr, _, answer = book.image_question(a, rng, heldout=heldout)
            if attr != "describe":
                assert read_attributes(answer)[attr] == a.to_dict()[attr], answer
            else:
                assert read_attributes(answer) == a.to_dict()


def test_parser_synonym_details():
    got = read_attributes("a large ring in the upper left corner on a white background")
    assert got == {"shape": "circle", "color": None, "size": "big", "position": "top left",
                   "background": "white"}
    assert read_attributes("a tiny violet plus at the center on beige")["shape"] == "cross"
    assert read_attributes("a tiny red plus at the center on beige")["position"] == "middle"
    assert read_attributes("a little box in the lower right")["size"] == "small"
    assert parse_attributes("a big star and a little star")["size"] == ["big", "small"]
    assert read_attributes("a big star and a large star")["size"] == "big"  # two ways to say one value
    assert read_attributes("a big star and a little star")["size"] is None
    assert read_attributes("at the upper right")["position"] == "top right"  # not "left"/"right" alone
