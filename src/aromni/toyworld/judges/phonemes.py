"""Phoneme units for the speech judge: espeak-ng's own phonemes, so the judge hears symbols, not spellings.

Every word of the shipped lexicon comes with its espeak-ng en-us phonemes (``assets/lexicon.tsv``, ASCII
mnemonics such as ``h'0spIt@L``). A phoneme judge is trained to emit those strings, stress marks removed, one
space between words; a decoded phoneme word becomes the lexicon word with that pronunciation, or the nearest one
by phoneme edit distance (:class:`~aromni.toyworld.judges.nearest.WordSnapper`). Spelling English from sound is
what a character judge has to learn word by word ("escape" -> "asckape"); the phonemes of a word the judge never
heard are made of the same few dozen symbols it heard everywhere else.

Words a training text uses outside the lexicon (the version-1 grammar's "be") get their phonemes from espeak-ng
itself (:func:`phonemize_words`), once, when the judge's pronunciation table is built; the table is saved in the
judge's config, so reading speech needs neither espeak-ng nor the lexicon file.

The one limit: words that sound alike. The lexicon keeps no two words with the same stressed phonemes, but "no"
and "know" differ only in stress, so a phoneme judge writes both as "no" (the more frequent).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping

from aromni.errors import InputError
from aromni.toyworld.lexicon import load_lexicon
from aromni.toyworld.voices import require_espeak

#: espeak-ng's primary and secondary stress marks: dropped, since stress is a property of the word.
STRESS = "',"


def strip_stress(phonemes: str) -> str:
    """``"h'0spIt@L" -> "h0spIt@L"``."""
    return phonemes.translate({ord(c): None for c in STRESS})


def phonemize_words(words: Iterable[str]) -> dict[str, str]:
    """espeak-ng en-us phonemes of each word, spoken alone (as the lexicon's were made), stress removed."""
    exe = require_espeak()
    out = {}
    for w in words:
        proc = subprocess.run([exe, "-q", "-x", "-v", "en-us", w], capture_output=True, text=True, check=False)
        got = "".join(proc.stdout.split())
        if proc.returncode != 0 or not got:
            raise InputError(f"espeak-ng gave no phonemes for {w!r}: {proc.stderr[:200]}",
                             "check the espeak-ng installation (apt-get install espeak-ng)")
        out[w] = strip_stress(got)
    return out


def pronunciation_table(texts: Iterable[str] = ()) -> dict[str, str]:
    """word -> stress-free phonemes: every lexicon word (frequency order), then the words of ``texts`` that the
    lexicon lacks, phonemised by espeak-ng (sorted)."""
    lexicon = load_lexicon()
    table = {w: strip_stress(p) for w, p in zip(lexicon.words, lexicon.phonemes)}
    missing = sorted({w for t in texts for w in t.split()} - table.keys())
    if missing:
        table.update(phonemize_words(missing))
    return table


def phoneme_alphabet(table: Mapping[str, str]) -> str:
    """The output symbols of a phoneme judge over ``table``: the space, then every phoneme character, sorted."""
    return " " + "".join(sorted({c for p in table.values() for c in p} - {" "}))


def text_to_phonemes(text: str, table: Mapping[str, str]) -> str:
    """``"the cat" -> "D@2 kat"``: each word's phonemes, single spaces. Every word must be in ``table``."""
    words = text.split()
    missing = sorted({w for w in words if w not in table})
    if missing:
        raise InputError(f"words {missing[:8]} have no pronunciation in the phoneme judge's table",
                         "train the judge on texts that contain them (their phonemes are added from espeak-ng)")
    return " ".join(table[w] for w in words)
