"""The toy world's open vocabulary: a few thousand common English words, and random word sequences over them.

The words ship with the package (``assets/lexicon.tsv``, written once by ``tools/make_lexicon.py`` from wordfreq
ranks, the Debian ``wamerican`` list and espeak-ng phonemes): one line per word, ``word<TAB>phonemes``, most
frequent first, no two words that sound alike. Building a world therefore needs no word list package, and a world
is the same on every machine.

A world holds some words out (:meth:`Lexicon.split`): they never occur in any training text or speech, only in the
test split, so a test sentence can measure words the model has never seen. Random word sequences
(:func:`random_sequence`) give the speech tasks sentences with no grammar to memorise.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from aromni.errors import InputError

LEXICON_FILE = Path(__file__).resolve().parent / "assets" / "lexicon.tsv"


@dataclass(frozen=True)
class Lexicon:
    """``words`` most frequent first; ``phonemes[i]`` is the espeak-ng en-us transcription of ``words[i]``."""

    words: tuple[str, ...]
    phonemes: tuple[str, ...]

    def split(self, seed: int, heldout_fraction: float, keep: Collection[str] = ()) -> tuple[list[str], list[str]]:
        """``(train_words, heldout_words)``: a seeded ``heldout_fraction`` of the words, never one in ``keep``
        (the grammar's words), goes to the test split only. Both lists keep the frequency order."""
        if not 0.0 <= heldout_fraction < 1.0:
            raise InputError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}", "use e.g. 0.05")
        pool = [w for w in self.words if w not in set(keep)]
        n = round(heldout_fraction * len(self.words))
        held = set(random.Random(f"lexicon-{seed}").sample(pool, min(n, len(pool))))
        return [w for w in self.words if w not in held], [w for w in self.words if w in held]


@cache
def load_lexicon(path: Path = LEXICON_FILE) -> Lexicon:
    """The shipped lexicon (or another file in the same format)."""
    if not path.is_file():
        raise InputError(f"{path}: no lexicon file", "reinstall aromni, or write one with tools/make_lexicon.py")
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = next((i for i, r in enumerate(rows) if len(r) != 2 or not r[0].isalpha() or not r[0].islower()), None)
    if bad is not None:
        raise InputError(f"{path}:{bad + 1}: expected 'word<TAB>phonemes' with a lower-case a-z word",
                         "rewrite the file with tools/make_lexicon.py")
    return Lexicon(tuple(r[0] for r in rows), tuple(r[1] for r in rows))


def random_sequence(words: Sequence[str], rng: random.Random, n_min: int = 3, n_max: int = 8,
                    zipf: float = 1.0) -> str:
    """``n_min``..``n_max`` words drawn independently, word ``i`` (0 = most frequent) with weight
    ``1 / (i + 10) ** zipf``: frequent words recur, rare ones still come up (0: uniform)."""
    if not words:
        raise InputError("no words to draw a sequence from", "pass a non-empty word list")
    weights = _weights(len(words), zipf)
    return " ".join(rng.choices(words, cum_weights=weights, k=rng.randint(n_min, n_max)))


@cache
def _weights(n: int, zipf: float) -> list[float]:
    total, out = 0.0, []
    for i in range(n):
        total += 1.0 / (i + 10) ** zipf
        out.append(total)
    return out
