"""Write the toy world's lexicon, ``src/aromni/toyworld/assets/lexicon.tsv`` (run once; the file is committed).

Usage::

    pip install wordfreq          # frequency ranks (a development-time tool only)
    apt-get install wamerican espeak-ng
    python tools/make_lexicon.py [--size 3000]

The words are the most frequent English words (wordfreq) that are also in the Debian ``wamerican`` word list
(``/usr/share/dict/words``, lower case, so no proper nouns), 3 to 8 letters a-z, minus a short block list.
Homophones are dropped with espeak-ng's en-us phonemes: of the words that sound alike only the most frequent stays
(``blew`` goes, ``blue`` stays), so a listener, human or judge, can always spell what it hears. Every word the
toy world's grammar uses is kept. Each line is ``word<TAB>phonemes``, most frequent first.

The file is shipped so that a world is the same on every machine; building a world needs neither wordfreq nor
wamerican.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from aromni.toyworld.grammar import spoken_vocabulary  # noqa: E402
from aromni.toyworld.lexicon import LEXICON_FILE  # noqa: E402
from aromni.utils.io import atomic_write_text  # noqa: E402

WORD = re.compile(r"^[a-z]{3,8}$")
#: Words a public toy world should not say.
BLOCKED = frozenset({"fuck", "fucking", "fucked", "shit", "bitch", "cunt", "dick", "cock", "pussy", "whore",
                     "slut", "nigger", "nigga", "fag", "faggot", "retard", "rape", "porn", "sex", "sexy", "nude",
                     "naked", "penis", "vagina", "boobs", "tits", "anal", "kill", "murder", "suicide", "nazi"})


def phonemes(words: list[str], batch: int = 200) -> dict[str, str]:
    """espeak-ng en-us phonemes of each word (batched; a batch whose output does not split into one phoneme word
    per word is redone word by word)."""
    out: dict[str, str] = {}
    for i in range(0, len(words), batch):
        chunk = words[i:i + batch]
        got = _espeak(" , ".join(chunk)).split()
        if len(got) != len(chunk):
            got = [_espeak(w).replace(" ", "") for w in chunk]
        out.update(zip(chunk, got))
    return out


def _espeak(text: str) -> str:
    return subprocess.run(["espeak-ng", "-q", "-x", "-v", "en-us", text], check=True, capture_output=True,
                          text=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=3000, help="words in the lexicon")
    ap.add_argument("--words", type=Path, default=Path("/usr/share/dict/words"))
    args = ap.parse_args()
    from wordfreq import top_n_list

    dictionary = set(args.words.read_text(encoding="utf-8").split())
    required = [w for w in spoken_vocabulary() if w.isalpha()]
    top = top_n_list("en", 60000)
    ranked = [w for w in top if WORD.match(w) and w in dictionary and w not in BLOCKED]
    candidates = list(dict.fromkeys(required + ranked[: args.size * 2]))
    sounds = phonemes(candidates)
    by_sound: dict[str, str] = {}
    for w in required:  # the grammar's words win their homophone groups
        by_sound.setdefault(sounds[w], w)
    kept = list(required)
    for w in candidates:
        if len(kept) >= args.size:
            break
        if w not in kept and by_sound.setdefault(sounds[w], w) == w:
            kept.append(w)
    order = {w: i for i, w in enumerate(top)}
    kept.sort(key=lambda w: order.get(w, len(order)))
    atomic_write_text(LEXICON_FILE, "".join(f"{w}\t{sounds[w]}\n" for w in kept))
    print(f"{len(kept)} words ({len(required)} from the grammar) -> {LEXICON_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
