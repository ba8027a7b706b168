"""Which test records measure generalisation: the held-out slices the suite reports separately.

A world (version 2) marks each test record in ``meta`` with what it holds out:

* ``voice_kind``: the user's voice: ``"heldout"`` (a speaker no training voice uses), ``"family"`` (espeak-ng's
  Klatt synthesis, a voice family training never uses), ``"synth"`` (another synthesizer, flite), ``"train"``;
* ``sentence``: ``"random"`` (a random word sequence: nothing to memorise), ``"grammar"`` or ``"exchange"``;
* ``heldout_words``: words that never occur in any training text or speech;
* ``heldout_phrasing``: a sentence frame or synonym that training never uses;
* ``heldout_combo``: the kind of attribute combination never drawn in training (``"shape_color"``, ...).

Version-1 worlds have only ``heldout_voice`` and ``heldout_combo``: there :func:`voice_kind` falls back to
``heldout_voice`` and every new-sentence slice is empty (reported as ``n/a``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aromni.toyworld.evaluation import metrics as M
from aromni.toyworld.grammar import normalize
from aromni.toyworld.records import WorldRecord
from aromni.utils.io import JSONValue

Predicate = Callable[[WorldRecord], bool]


def _meta(rec: WorldRecord) -> dict[str, JSONValue]:
    meta = rec.get("meta")
    return meta if isinstance(meta, dict) else {}


def voice_kind(rec: WorldRecord) -> str | None:
    """The user's voice kind (v1: ``"heldout"`` for a held-out voice, else ``None``)."""
    kind = _meta(rec).get("voice_kind")
    if isinstance(kind, str):
        return kind
    return "heldout" if _meta(rec).get("heldout_voice") else None


def heldout_words(rec: WorldRecord) -> list[str]:
    words = _meta(rec).get("heldout_words")
    return [w for w in words if isinstance(w, str)] if isinstance(words, list) else []


def new_sentence(rec: WorldRecord) -> bool:
    """A sentence no training record says: a random word sequence, held-out words or a held-out phrasing."""
    m = _meta(rec)
    return m.get("sentence") == "random" or bool(m.get("heldout_phrasing")) or bool(heldout_words(rec))


def heldout_phrasing(rec: WorldRecord) -> bool:
    return bool(_meta(rec).get("heldout_phrasing"))


def heldout_voice_new_sentence(rec: WorldRecord) -> bool:
    return voice_kind(rec) == "heldout" and new_sentence(rec)


def of_voice(kind: str) -> Predicate:
    return lambda rec: voice_kind(rec) == kind


def indices(recs: Sequence[WorldRecord], keep: Predicate) -> list[int]:
    return [i for i, r in enumerate(recs) if keep(r)]


def sliced_wer(refs: Sequence[str], hyps: Sequence[str], idx: Sequence[int]) -> float | None:
    """Corpus WER over the records ``idx`` (``None`` when the slice is empty)."""
    return M.corpus_wer([refs[i] for i in idx], [hyps[i] for i in idx])


def word_recall(words: Sequence[Sequence[str]], hyps: Sequence[str]) -> float | None:
    """The share of ``words[i]`` found (as whole words) in ``hyps[i]``: how many held-out words were heard or
    spoken right, wherever they landed in the sentence (``None``: no words)."""
    found = [w in set(normalize(h).split()) for ws, h in zip(words, hyps) for w in ws]
    return M.fraction(found)


def wer_slices(recs: Sequence[WorldRecord], refs: Sequence[str], hyps: Sequence[str]) -> dict[str, JSONValue]:
    """The WER of each held-out slice, its size, and the recall of held-out words."""
    out: dict[str, JSONValue] = {}
    for name, keep in (("heldout_voices", of_voice("heldout")),
                       ("heldout_voices_new_sentences", heldout_voice_new_sentence),
                       ("heldout_words", lambda r: bool(heldout_words(r))),
                       ("family", of_voice("family")), ("synth", of_voice("synth"))):
        idx = indices(recs, keep)
        out[f"wer_{name}"] = sliced_wer(refs, hyps, idx)
        out[f"n_{name}"] = len(idx)
    idx = indices(recs, lambda r: bool(heldout_words(r)))
    out["heldout_word_recall"] = word_recall([heldout_words(recs[i]) for i in idx], [hyps[i] for i in idx])
    return out
