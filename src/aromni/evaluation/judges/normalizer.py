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


def word_errors(refs: Sequence[str], hyps: Sequence[str], *,
                spelling: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(errors, reference words)`` over pairs, both sides normalised with :func:`normalize_english`.

    Errors are the word-level edit distance (substitutions + deletions + insertions, via jiwer). A reference that
    normalises to nothing counts 0 words, and every word of its hypothesis counts as an insertion.

    Raises:
        InputError: ``refs`` and ``hyps`` differ in length.
    """
    if len(refs) != len(hyps):
        raise InputError(f"{len(refs)} references but {len(hyps)} hypotheses", "pass one hypothesis per reference")
    jiwer = optional("jiwer", extra="eval", feature="word error rates")
    norm = _normalizer(_key(spelling))
    errors = words = 0
    for ref, hyp in zip(refs, hyps):
        r, h = norm(ref).split(), norm(hyp).split()
        words += len(r)
        if not r:
            errors += len(h)
        elif not h:
            errors += len(r)
        else:
            out = jiwer.process_words(" ".join(r), " ".join(h))
            errors += out.substitutions + out.deletions + out.insertions
    return errors, words


def wer_from_counts(errors: int, words: int) -> float:
    """Corpus WER ``errors / words`` (summed over shards); ``nan`` when there are no reference words."""
    return errors / words if words else float("nan")
