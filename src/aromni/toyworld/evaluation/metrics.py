"""Metric functions of the toy-world suite: attribute parsing, answer rules, WER, attribute accuracy, CIDEr.

Everything here is pure (strings and dicts in, numbers out), so it is tested against hand computations.

* :func:`parse_attributes` reads the world's attribute words out of any text with the world's closed
  vocabulary (:mod:`aromni.toyworld.attributes`) and every synonym of world version 2
  (:data:`aromni.toyworld.grammar_v2.SYNONYMS`, held-out ones included: this is the measuring instrument), so
  "a large ring in the upper left" reads size big, shape circle, position top left. An attribute counts as
  *read* only when exactly one of its values is mentioned: "it is red" reads colour red, "it is red or blue"
  reads no colour, "a big and little star" reads no size.
* :func:`answer_correct` is the rule for questions of the world's QA grammar (:mod:`aromni.toyworld.grammar`):
  the answer must read the asked attribute right ("describe" questions: all five attributes); words about other
  attributes do not matter. Fixed exchanges have one answer and are scored by exact match after
  :func:`~aromni.toyworld.grammar.normalize`.
* :func:`corpus_wer` is corpus-level WER (``jiwer``): total edits / total reference words, not a mean of
  per-utterance rates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from aromni.toyworld import grammar_v2
from aromni.toyworld.attributes import (
    ATTRIBUTE_NAMES,
    BACKGROUNDS,
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    ImageAttrs,
)
from aromni.toyworld.grammar import CAPTION_TEMPLATES, fill_template, normalize
from aromni.toyworld.grammar_v2 import SYNONYMS
from aromni.utils.extras import optional

_VALUES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "color": tuple(COLORS),
    "size": tuple(SIZES),
    "position": tuple(POSITIONS),
    "background": tuple(BACKGROUNDS),
}
# Every way to say a value -> (attribute, value): the value's own words and all v2 synonyms.
_PHRASES: dict[str, tuple[str, str]] = {v: (attr, v) for attr, values in _VALUES.items() for v in values}
_PHRASES.update({form: (attr, value) for attr, table in SYNONYMS.items() for value, forms in table.items()
                 for form in forms})
# Longest first, so "upper left" is one mention, not "left"; positions are phrases ("top left", "middle").
_PHRASE_RE = re.compile(r"\b(" + "|".join(map(re.escape, sorted(_PHRASES, key=len, reverse=True))) + r")\b")


def parse_attributes(text: str) -> dict[str, list[str]]:
    """Every value of every attribute that ``text`` mentions, in order of first mention, without repeats.

    >>> parse_attributes("a big red circle at the top left on a white background")["position"]
    ['top left']
    >>> parse_attributes("a large ring in the upper left corner")["shape"]
    ['circle']
    """
    out: dict[str, list[str]] = {k: [] for k in ATTRIBUTE_NAMES}
    for m in _PHRASE_RE.finditer(normalize(text)):
        attr, value = _PHRASES[m.group(1)]
        if value not in out[attr]:
            out[attr].append(value)
    return out


def read_attributes(text: str) -> dict[str, str | None]:
    """One value per attribute: the value when exactly one is mentioned, else ``None``."""
    return {k: (v[0] if len(v) == 1 else None) for k, v in parse_attributes(text).items()}


def attributes_correct(text: str, truth: Mapping[str, str]) -> dict[str, bool]:
    """Per attribute: does ``text`` read it right (see :func:`read_attributes`)."""
    got = read_attributes(text)
    return {k: got[k] == truth[k] for k in ATTRIBUTE_NAMES}


def answer_correct(attribute: str, answer: str, truth: Mapping[str, str]) -> bool:
    """Rule for a question about an image (``attribute`` is ``meta.question_attribute``: one of the five
    attributes, or ``"describe"``, which needs all five right)."""
    ok = attributes_correct(answer, truth)
    if attribute == "describe":
        return all(ok.values())
    if attribute not in ok:
        raise ValueError(f"unknown question attribute {attribute!r}")
    return ok[attribute]


def exact_match(reference: str, hypothesis: str) -> bool:
    return normalize(reference) == normalize(hypothesis)


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float | None:
    """Corpus WER of normalised strings (``None`` for no references)."""
    return _corpus_error("wer", references, hypotheses)


def corpus_cer(references: Sequence[str], hypotheses: Sequence[str]) -> float | None:
    """Corpus character error rate of normalised strings (``None`` for no references)."""
    return _corpus_error("cer", references, hypotheses)


def _corpus_error(kind: str, references: Sequence[str], hypotheses: Sequence[str]) -> float | None:
    jiwer = optional("jiwer", extra="audio", feature={"wer": "word", "cer": "character"}[kind] + " error rates")
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize(r) for r in references]
    if not refs:
        return None
    if any(not r for r in refs):
        raise ValueError("a reference is empty after normalisation")
    return float(getattr(jiwer, kind)(refs, [normalize(h) for h in hypotheses]))


def attribute_accuracy(reads: Sequence[Mapping[str, str] | None], truths: Sequence[Mapping[str, str]]
                       ) -> dict[str, float | None]:
    """Per-attribute and all-five accuracy of attribute reads (``None`` read: everything wrong)."""
    if len(reads) != len(truths):
        raise ValueError(f"{len(reads)} reads but {len(truths)} truths")
    if not truths:
        return {"all": None, **{k: None for k in ATTRIBUTE_NAMES}}
    ok = [{k: r is not None and r.get(k) == t[k] for k in ATTRIBUTE_NAMES} for r, t in zip(reads, truths)]
    out = {"all": sum(all(o.values()) for o in ok) / len(ok)}
    out.update({k: sum(o[k] for o in ok) / len(ok) for k in ATTRIBUTE_NAMES})
    return out


def fraction(flags: Sequence[bool]) -> float | None:
    return sum(bool(f) for f in flags) / len(flags) if flags else None


def reference_captions(attrs: Mapping[str, str], version: int = 1) -> list[str]:
    """The CIDEr references of an image: every caption template of world ``version``'s grammar filled with
    ``attrs`` (version 1: its 6 templates; version 2: :func:`aromni.toyworld.grammar_v2.reference_captions`)."""
    a = ImageAttrs(**{k: attrs[k] for k in ATTRIBUTE_NAMES})
    if version >= 2:
        return grammar_v2.reference_captions(a)
    return [fill_template(t, a) for t in CAPTION_TEMPLATES]  # the grammar's own filler


def cider(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> tuple[float, list[float]] | None:
    """CIDEr (``pycocoevalcap.cider.cider.Cider``; the strings are normalised and split on spaces, no Java
    tokenizer). Its idf comes from the evaluated set itself, so it needs at least 2 images (``None`` otherwise).
    Returns ``(corpus score, per-image scores)``."""
    Cider = optional("pycocoevalcap.cider.cider", extra="eval", feature="CIDEr").Cider
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference sets but {len(hypotheses)} hypotheses")
    if len(hypotheses) < 2:
        return None
    gts = {i: [normalize(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [normalize(h)] for i, h in enumerate(hypotheses)}
    score, scores = Cider().compute_score(gts, res)
    return float(score), [float(s) for s in scores]


def median(values: Sequence[float | None]) -> float | None:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    n = len(vals)
    return vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
