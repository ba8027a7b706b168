"""CIDEr-D of image captions (COCO caption evaluation), via pycocoevalcap's scorer.

CIDEr-D (Vedantam et al. 2015, as coco-caption computes it): TF-IDF vectors of 1- to 4-grams, the IDF taken over
the *references of the evaluated images*, the hypothesis' counts clipped to the reference's, a Gaussian length
penalty (sigma 6), cosine similarity averaged over n and over the references, times 10. Because the IDF depends on
the whole evaluated set, CIDEr is not a sum over shards: gather every shard's captions and call :func:`cider` once.

Tokenisation. coco-caption lower-cases and tokenises with Stanford's PTBTokenizer (Java; its jar ships inside
pycocoevalcap) and removes the punctuation tokens ``'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;``.
``tokenizer="auto"`` uses it when ``java`` is on the PATH and otherwise :func:`simple_tokenize`, our pure-Python
stand-in: lower-case; words (letters/digits, joined by inner hyphens, apostrophes or dots, as PTB keeps
"black-and-white" and "1.5" whole) with the clitics 's 're 've 'll 'd 'm n't split off as PTB does; every other
symbol its own token; brackets written as PTB writes them after lower-casing (``(`` -> ``-lrb-``, which is not
in the removal list, so coco-caption keeps it); double quotes and the PTB removal list dropped. It agrees with PTB
on ordinary captions (tested where Java exists) but not everywhere: PTB keeps the final dot of abbreviations it
knows ("e.g."), ours drops it. Reports should name the tokenizer used (:func:`resolve_tokenizer`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from aromni.errors import AromniError, InputError
from aromni.utils.extras import optional

#: Tokens coco-caption removes after PTB tokenisation (its PUNCTUATIONS list), and what ours also drops.
PTB_REMOVED = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-",
                         "--", "...", ";"])
_DROPPED = PTB_REMOVED | {'"'}
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_TOKEN = re.compile(r"[^\W_]+(?:[-'.][^\W_]+)*|\.\.\.|--|[^\w\s]")
_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")


def simple_tokenize(text: str) -> list[str]:
    """``text`` lower-cased and split into PTB-like tokens, punctuation removed (see the module docstring)."""
    out: list[str] = []
    for tok in _TOKEN.findall(text.lower().replace("\n", " ")):
        m = _CLITIC.match(tok)
        parts = [m.group(1), m.group(2)] if m else [tok]
        out.extend(_BRACKETS.get(p, p) for p in parts if p not in _DROPPED)
    return out


def resolve_tokenizer(tokenizer: str = "auto") -> str:
    """``"ptb"`` or ``"simple"``: the tokenizer :func:`cider` will use for ``tokenizer``."""
    if tokenizer not in ("auto", "ptb", "simple"):
        raise InputError(f"unknown CIDEr tokenizer {tokenizer!r}", "pass 'auto', 'ptb' or 'simple'")
    if tokenizer == "auto":
        return "ptb" if shutil.which("java") else "simple"
    if tokenizer == "ptb" and not shutil.which("java"):
        raise InputError("the PTB tokenizer needs Java, which is not on the PATH",
                         "install a Java runtime or pass tokenizer='simple'")
    return tokenizer


def _tokenize(captions: dict[str, list[str]], tokenizer: str) -> dict[str, list[str]]:
    if tokenizer == "simple":
        return {k: [" ".join(simple_tokenize(c)) for c in v] for k, v in captions.items()}
    ptb = optional("pycocoevalcap.tokenizer.ptbtokenizer", extra="eval", feature="CIDEr's PTB tokenizer")
    hint = "check the Java runtime, or pass tokenizer='simple'"
    try:  # it writes a temporary file beside its jar and runs java on it
        out = ptb.PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})
    except (OSError, subprocess.SubprocessError) as e:
        raise AromniError(f"the PTB tokenizer (Java) failed: {e}", hint) from None
    if any(len(out.get(k, [])) != len(v) for k, v in captions.items()):  # java printed fewer lines than captions
        raise AromniError("the PTB tokenizer (Java) returned fewer captions than it was given", hint)
    return out


def cider(refs: Mapping[str, Sequence[str]], hyps: Mapping[str, str], *,
          tokenizer: str = "auto") -> tuple[float, dict[str, float]]:
    """Corpus CIDEr-D and the score of each image (coco-caption's scale: 1.0 is "100" in papers' tables).

    Args:
        refs: image id -> its reference captions (at least one each).
        hyps: image id -> the generated caption; the same ids as ``refs``.
        tokenizer: ``"auto"`` (PTB when Java exists), ``"ptb"`` or ``"simple"``.

    Returns:
        ``(mean over images, {image id: score})``.

    Raises:
        InputError: no images, ids that differ between ``refs`` and ``hyps``, an image without references.
    """
    if not refs:
        raise InputError("CIDEr needs at least one image", "pass references and a caption for each image")
    if set(refs) != set(hyps):
        odd = sorted(set(refs) ^ set(hyps), key=str)[:3]
        raise InputError(f"references and captions cover different images (e.g. {odd})",
                         "pass one generated caption per image that has references")
    empty = [k for k, v in refs.items() if isinstance(v, str) or not v]
    if empty:
        raise InputError(f"image {empty[0]!r} has no list of reference captions", "give each image a list of refs")
    scorer = optional("pycocoevalcap.cider.cider_scorer", extra="eval", feature="CIDEr")
    used = resolve_tokenizer(tokenizer)
    ids = [str(k) for k in refs]
    gts = _tokenize({str(k): list(v) for k, v in refs.items()}, used)
    res = _tokenize({str(k): [hyps[k]] for k in refs}, used)
    cs = scorer.CiderScorer(n=4, sigma=6.0)
    for k in ids:
        cs += (res[k][0], gts[k])
    if not any(r.split() for k in ids for r in gts[k]):
        raise InputError("every reference caption is empty after tokenisation", "pass non-empty references")
    mean, per_image = cs.compute_score()
    return float(mean), {k: float(s) for k, s in zip(ids, per_image)}
