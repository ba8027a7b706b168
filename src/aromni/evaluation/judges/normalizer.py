"""English text normalisation for word error rates, as Whisper's evaluations do, and WER counts.

:func:`normalize_english` is transformers' port of Whisper's ``EnglishTextNormalizer`` (the normaliser of the
Whisper paper's evaluations, Appendix C): lower-case; remove spans in ``[...]``/``<...>`` and ``(...)``; remove
fillers (hmm, mm, mhm, mmm, uh, um); expand common contractions ("won't" -> "will not", "let's" -> "let us");
standardise titles ("mr" -> "mister"); spelled-out numbers to digits ("twenty one" -> "21", "two thousand and
nine" -> "2009", "one point five" -> "1.5", currencies and percentages); British to American spelling; remove
diacritics and punctuation (symbols become spaces, apostrophes in possessives kept as Whisper does); collapse
whitespace.

The British -> American spelling table is not shipped here (it is data, about 1,700 pairs): Whisper model
directories ship it as ``normalizer.json``. Pass it as ``spelling`` (``WhisperTranscriber.spelling()`` reads
it); without it the spelling step maps nothing, so "colour" and "color" count as different words.

:func:`word_errors` returns (substitutions + deletions + insertions, reference words) for a list of pairs, so
shards can sum counts and :func:`wer_from_counts` gives the corpus WER (not the mean of per-utterance WERs).
:func:`char_errors` does the same over characters of the normalised texts (spaces included, as jiwer's CER
counts them) for the CER that OmniVIVO reports; ``wer_from_counts`` turns its counts into the corpus CER.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from aromni.errors import InputError
from aromni.utils.extras import optional


@lru_cache(maxsize=8)
def _normalizer(spelling: tuple[tuple[str, str], ...]):
    module = optional("transformers.models.whisper.english_normalizer", extra="bench",
                      feature="the Whisper English text normaliser")
    return module.EnglishTextNormalizer(dict(spelling))


def _key(spelling: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(spelling.items())) if spelling else ()


def normalize_english(text: str, *, spelling: Mapping[str, str] | None = None) -> str:
    """``text`` normalised as Whisper's English evaluations do (see the module docstring).

    Args:
        text: one transcript or reference.
        spelling: the British -> American table (a Whisper directory's ``normalizer.json``); ``None``: none.
    """
    return _normalizer(_key(spelling))(text)


def _edit_counts(refs: Sequence[str], hyps: Sequence[str], spelling: Mapping[str, str] | None,
                 unit: str) -> tuple[int, int]:
    """``(edits, reference units)`` with units ``"words"`` or ``"characters"`` of the normalised texts."""
    if len(refs) != len(hyps):
        raise InputError(f"{len(refs)} references but {len(hyps)} hypotheses", "pass one hypothesis per reference")
    jiwer = optional("jiwer", extra="eval", feature=f"{unit[:-1]} error rates")
    process = jiwer.process_words if unit == "words" else jiwer.process_characters
    norm = _normalizer(_key(spelling))
    errors = total = 0
    for ref, hyp in zip(refs, hyps):
        r, h = " ".join(norm(ref).split()), " ".join(norm(hyp).split())
        size = len(r.split()) if unit == "words" else len(r)
        total += size
        if not r or not h:  # jiwer refuses empty strings: all of the other side is insertions or deletions
            errors += size + (len(h.split()) if unit == "words" else len(h))
        else:
            out = process(r, h)
            errors += out.substitutions + out.deletions + out.insertions
    return errors, total


def word_errors(refs: Sequence[str], hyps: Sequence[str], *,
                spelling: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(errors, reference words)`` over pairs, both sides normalised with :func:`normalize_english`.

    Errors are the word-level edit distance (substitutions + deletions + insertions, via jiwer). A reference that
    normalises to nothing counts 0 words, and every word of its hypothesis counts as an insertion.

    Raises:
        InputError: ``refs`` and ``hyps`` differ in length.
    """
    return _edit_counts(refs, hyps, spelling, "words")


def char_errors(refs: Sequence[str], hyps: Sequence[str], *,
                spelling: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(character edits, reference characters)`` over pairs of :func:`normalize_english` texts (single spaces
    between words count as characters). An empty reference counts 0 characters and all hypothesis characters.

    Raises:
        InputError: ``refs`` and ``hyps`` differ in length.
    """
    return _edit_counts(refs, hyps, spelling, "characters")


def wer_from_counts(errors: int, words: int) -> float:
    """Corpus WER ``errors / words`` (summed over shards; or CER from :func:`char_errors`' counts); ``nan`` when
    there are no reference words."""
    return errors / words if words else float("nan")
