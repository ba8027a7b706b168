"""Nearest-word lookup by edit distance: the speech judges' vocabulary prior (no sequence prior).

A :class:`WordSnapper` holds a list of keys (spellings, or phoneme strings) and the word each key stands for. It
maps a decoded token to the word whose key is nearest by Levenshtein distance, and a decoded sentence to words
with :meth:`WordSnapper.snap`, which may also split one decoded token into two words or merge two into one when
that costs fewer edits (a moved or missing space is one edit). The choice never depends on which words follow
which.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class WordSnapper:
    """``keys[i]`` is what a decoded token is compared with, ``words[i]`` what it becomes (default: the key).

    Ties go to the earlier key, so keys ordered most frequent first prefer the more frequent word. Duplicate keys
    keep their first word."""

    def __init__(self, keys: Sequence[str], words: Sequence[str] | None = None):
        words = list(keys) if words is None else list(words)
        if len(words) != len(keys) or not keys:
            raise ValueError("WordSnapper needs a non-empty list of keys and one word per key")
        self.keys = tuple(keys)
        self.words = tuple(words)
        self.index: dict[str, str] = {}
        for k, w in zip(self.keys, self.words):
            self.index.setdefault(k, w)
        symbols = {c: i + 1 for i, c in enumerate(sorted({c for k in self.keys for c in k}))}
        width = max(len(k) for k in self.keys)
        self._symbols = symbols
        self._codes = np.zeros((len(self.keys), width), dtype=np.int32)  # [W, L], 0-padded symbol codes
        for i, k in enumerate(self.keys):
            self._codes[i, : len(k)] = [symbols[c] for c in k]
        self._lengths = np.array([len(k) for k in self.keys])
        self._cache: dict[str, tuple[str, int]] = {}

    def distances(self, token: str) -> np.ndarray:
        """Edit distance from ``token`` to every key ``[W]`` (Levenshtein, one vectorised DP row per symbol)."""
        n_keys, width = self._codes.shape
        prev = np.broadcast_to(np.arange(width + 1), (n_keys, width + 1)).copy()  # [W, L + 1]
        for i, ch in enumerate(token, 1):
            code = self._symbols.get(ch, -1)  # a symbol no key has matches nothing
            cur = np.empty_like(prev)
            cur[:, 0] = i
            best = np.minimum(prev[:, :-1] + (self._codes != code), prev[:, 1:] + 1)  # substitute / delete
            for j in range(1, width + 1):  # insertions run along the row
                cur[:, j] = np.minimum(best[:, j - 1], cur[:, j - 1] + 1)
            prev = cur
        return prev[np.arange(n_keys), self._lengths]

    def nearest(self, token: str) -> tuple[str, int]:
        """``(word of the nearest key, distance)``."""
        hit = self._cache.get(token)
        if hit is None:
            if token in self.index:
                hit = (self.index[token], 0)
            else:
                d = self.distances(token)
                i = int(d.argmin())  # argmin keeps the first of tied keys
                hit = (self.words[i], int(d[i]))
            self._cache[token] = hit
        return hit

    def snap(self, text: str) -> str:
        """Every space-separated token of ``text`` -> a word, by dynamic programming over the tokens: each token
        becomes its nearest word, or two words (one inserted space, +1), or merges with the next token into one
        word (one deleted space, +1), whichever sequence of choices costs the fewest edits in all."""
        toks = text.split()
        n = len(toks)
        best: list[tuple[int, list[str]]] = [(0, [])] + [(10**9, [])] * n  # best[i]: cost and words for toks[:i]
        for i in range(n):
            cost_i, out_i = best[i]
            tok = toks[i]
            w, d = self.nearest(tok)
            options = [(i + 1, d, [w])]
            for k in range(1, len(tok)):
                (w1, d1), (w2, d2) = self.nearest(tok[:k]), self.nearest(tok[k:])
                options.append((i + 1, d1 + d2 + 1, [w1, w2]))
            if i + 1 < n:
                wm, dm = self.nearest(tok + toks[i + 1])
                options.append((i + 2, dm + 1, [wm]))
            for j, d, words in options:
                if cost_i + d < best[j][0]:
                    best[j] = (cost_i + d, out_i + words)
        return " ".join(best[n][1])
