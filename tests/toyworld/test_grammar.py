import random

import pytest

from aromni.toyworld import grammar
from aromni.toyworld.attributes import (
    BACKGROUNDS,
    COLORS,
    POSITION_PHRASES,
    POSITIONS,
    SHAPES,
    SIZES,
    ImageAttrs,
)


def _all_attrs():
    rng = random.Random(0)
    for _ in range(300):
        yield ImageAttrs(rng.choice(SHAPES), rng.choice(list(COLORS)), rng.choice(list(SIZES)),
                         rng.choice(list(POSITIONS)), rng.choice(list(BACKGROUNDS)))


def test_normalize():
    assert grammar.normalize("  A Big, RED circle!  on a white-background. ") == "a big red circle on a white background"


def test_every_caption_names_all_attributes_and_is_normalised():
    rng = random.Random(1)
    for a in _all_attrs():
        for text in (grammar.caption(a, rng), grammar.spoken_description(a, rng),
                     grammar.draw_request(a, rng, spoken=True), grammar.draw_request(a, rng, spoken=False)):
            assert text == grammar.normalize(text)
            for word in (a.shape, a.color, a.size, POSITION_PHRASES[a.position].split(" ", 1)[1], a.background):
                assert word in text, (word, text)


def test_article_before_vowel():
    a = ImageAttrs("star", "orange", "small", "middle", "white")
    rng = random.Random(0)
    texts = {grammar.caption(a, rng) for _ in range(50)}
    assert not any(" a orange" in t or t.startswith("a orange") for t in texts)
    assert any("an orange" in t for t in texts)


def test_answers_carry_the_asked_attribute():
    rng = random.Random(2)
    for a in _all_attrs():
        attr, q, ans = grammar.image_question(a, rng)
        expected = {"color": a.color, "shape": a.shape, "size": a.size, "background": a.background,
                    "position": POSITION_PHRASES[a.position], "describe": a.shape}[attr]
        assert expected in ans
        attr, q, ans = grammar.followup_question(a, rng)
        assert q and ans


def test_spoken_vocabulary_is_closed_and_small():
    vocab = set(grammar.spoken_vocabulary())
    assert 50 < len(vocab) < 150
    rng = random.Random(3)
    for a in _all_attrs():
        for text in (grammar.caption(a, rng), grammar.spoken_description(a, rng), grammar.image_question(a, rng)[2],
                     grammar.followup_question(a, rng)[2], grammar.draw_request(a, rng, spoken=True)):
            assert set(text.split()) <= vocab, text
    for q, ans in grammar.exchanges():
        assert set(q.split()) | set(ans.split()) <= vocab


def test_exchanges_have_one_answer_per_question():
    pairs = grammar.exchanges()
    assert len({q for q, _ in pairs}) == len(pairs)


@pytest.mark.parametrize("bad", [("hexagon", "red"), ("circle", "teal")])
def test_attrs_validate(bad):
    with pytest.raises(ValueError):
        ImageAttrs(bad[0], bad[1], "big", "middle", "white")
