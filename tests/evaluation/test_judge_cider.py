"""CIDEr-D against hand computations: a pencil-and-paper case and an independent numpy implementation of the
formula; our simple tokenizer against PTB's where Java exists; bad inputs."""

from __future__ import annotations

import math
import shutil
from collections import Counter

import numpy as np
import pytest

from aromni.errors import InputError
from aromni.evaluation.judges import cider
from aromni.evaluation.judges.cider import resolve_tokenizer, simple_tokenize

pytest.importorskip("pycocoevalcap")


def test_pencil_case():
    # Two images, N = 2. "a" is in both images' references: idf 0. "cat", "dog", "a cat", "a dog": idf log 2.
    # A perfect caption: cosine 1 for 1- and 2-grams, 0 for the absent 3- and 4-grams -> mean 0.5, x10 = 5.
    # "a dog" for the cat image: its only weighted n-grams ("dog", "a dog") are not in the reference -> 0.
    refs = {"cat": ["a cat"], "dog": ["a dog"]}
    assert cider(refs, {"cat": "A cat.", "dog": "a dog"}, tokenizer="simple") == (5.0, {"cat": 5.0, "dog": 5.0})
    assert cider(refs, {"cat": "a dog", "dog": "a dog"}, tokenizer="simple") == (2.5, {"cat": 0.0, "dog": 5.0})
    assert cider(refs, {"cat": "", "dog": "a dog"}, tokenizer="simple") == (2.5, {"cat": 0.0, "dog": 5.0})


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def _cider_d_by_hand(refs: dict[str, list[str]], hyps: dict[str, str], sigma: float = 6.0) -> dict[str, float]:
    """CIDEr-D from its definition: tf-idf n-gram vectors (idf over the images' references), clipped hypothesis
    counts, Gaussian length penalty, mean over n = 1..4 and over references, x10."""
    tok = {k: [r.split() for r in v] for k, v in refs.items()}
    n_images = len(refs)
    df = Counter(g for rs in tok.values() for g in {g for r in rs for n in range(1, 5) for g in _ngrams(r, n)})

    def vec(words, n):
        return {g: c * (math.log(n_images) - math.log(max(1.0, df[g]))) for g, c in _ngrams(words, n).items()}

    out = {}
    for k, rs in tok.items():
        h = hyps[k].split()
        total = 0.0
        for r in rs:
            per_n = []
            for n in range(1, 5):
                vh, vr = vec(h, n), vec(r, n)
                nh, nr = np.sqrt(sum(v * v for v in vh.values())), np.sqrt(sum(v * v for v in vr.values()))
                dot = sum(min(v, vr.get(g, 0.0)) * vr.get(g, 0.0) for g, v in vh.items())
                cos = dot / (nh * nr) if nh and nr else 0.0
                per_n.append(cos * math.exp(-((len(h) - len(r)) ** 2) / (2 * sigma ** 2)))
            total += np.mean(per_n)
        out[k] = 10 * total / len(rs)
    return out


def test_matches_independent_computation():
    refs = {
        "1": ["a man rides a wave on a surfboard", "a surfer riding a big wave", "a man surfing in the ocean"],
        "2": ["a cat sleeps on a red sofa", "a cat lying on a couch"],
        "3": ["two dogs play in the snow", "dogs running through snow in a park", "two dogs in a snowy field",
              "a pair of dogs playing outside"],
    }
    hyps = {"1": "a man riding a wave on a surfboard in the ocean", "2": "a cat on a sofa",
            "3": "a dog playing in the snow with another dog in a park"}
    expected = _cider_d_by_hand(refs, hyps)
    mean, per_image = cider(refs, hyps, tokenizer="simple")
    assert per_image.keys() == expected.keys()
    for k in expected:
        assert per_image[k] == pytest.approx(expected[k], rel=1e-9), k
    assert mean == pytest.approx(np.mean(list(expected.values())), rel=1e-9)
    assert 0 < min(per_image.values()) and len(set(per_image.values())) == 3


def test_simple_tokenizer():
    assert simple_tokenize("The dog's ball isn't red, it's black-and-white!") == \
        "the dog 's ball is n't red it 's black-and-white".split()
    assert simple_tokenize('Two people (a man) -- "smiling"... 1.5 m; yes?') == \
        "two people -lrb- a man -rrb- smiling 1.5 m yes".split()


@pytest.mark.skipif(shutil.which("java") is None, reason="PTBTokenizer needs Java")
def test_simple_tokenizer_agrees_with_ptb_and_scores_match():
    refs = {"a": ["A man riding a wave on top of a surfboard.", "The dog's ball isn't red, it's black-and-white!"],
            "b": ["Two people (a man and a woman) sit on a bench -- smiling...", "A 1.5 m tall giraffe; eating: yes?"]}
    hyps = {"a": "A man on a surfboard, riding a wave.", "b": "Two people sitting on a bench!"}
    assert resolve_tokenizer("auto") == "ptb"
    ptb = cider(refs, hyps, tokenizer="ptb")
    simple = cider(refs, hyps, tokenizer="simple")
    assert ptb[0] == pytest.approx(simple[0], rel=1e-12) and ptb[0] > 0
    assert cider(refs, {"a": "", "b": ""}, tokenizer="ptb") == (0.0, {"a": 0.0, "b": 0.0})  # empty captions


def test_bad_inputs():
    with pytest.raises(InputError, match="at least one image"):
        cider({}, {})
    with pytest.raises(InputError, match="different images"):
        cider({"a": ["x y"]}, {"b": "x y"}, tokenizer="simple")
    with pytest.raises(InputError, match="no list of reference"):
        cider({"a": []}, {"a": "x"}, tokenizer="simple")
    with pytest.raises(InputError, match="no list of reference"):
        cider({"a": "x y"}, {"a": "x"}, tokenizer="simple")
    with pytest.raises(InputError, match="unknown CIDEr tokenizer"):
        cider({"a": ["x"]}, {"a": "x"}, tokenizer="nltk")
