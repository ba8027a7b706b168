"""Readers of the public datasets in their standard published layouts, and the fixed sampling protocol.

Every reader returns the dataset's samples in one canonical order (sorted by id), or raises one
:class:`~aromni.errors.InputError` line naming the expected layout. :func:`select` then picks ``limit`` of them
with a seed (``docs/eval.md``).

Layouts (``LAYOUTS``):

* COCO 2014 + Karpathy split: ``DIR/dataset_coco.json`` (``images[{filepath, filename, split, sentences[{raw}],
  cocoid}]``) and the images at ``DIR/<filepath>/<filename>`` (``val2014/COCO_val2014_000000391895.jpg``).
* LibriSpeech: ``DIR/test-clean/SPK/CHAP/SPK-CHAP.trans.txt`` (``SPK-CHAP-UTT TEXT`` lines) next to
  ``SPK-CHAP-UTT.flac``; ``DIR`` may also be the ``LibriSpeech/`` parent or the subset folder itself.
* VCTK: ``DIR/txt/pXXX/pXXX_YYY.txt`` with ``DIR/wav48_silence_trimmed/pXXX/pXXX_YYY_mic1.flac`` (0.92) or
  ``DIR/wav48/pXXX/pXXX_YYY.wav`` (0.80).
* LibriTTS: ``DIR/test-clean/SPK/CHAP/SPK_CHAP_PPPPPP_UUUUUU.wav`` + ``.normalized.txt``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aromni.errors import InputError
from aromni.utils.io import JSONValue, read_json, read_text

LAYOUTS = {
    "coco": "DIR/dataset_coco.json (Karpathy split: images[{filepath, filename, split, sentences[{raw}], cocoid}]) "
            "and DIR/<filepath>/<filename> images, e.g. DIR/val2014/COCO_val2014_000000391895.jpg",
    "librispeech": "DIR/test-clean/SPK/CHAP/SPK-CHAP.trans.txt ('SPK-CHAP-UTT TEXT' lines) and "
                   "SPK-CHAP-UTT.flac beside it",
    "vctk": "DIR/txt/pXXX/pXXX_YYY.txt and DIR/wav48_silence_trimmed/pXXX/pXXX_YYY_mic1.flac "
            "(or DIR/wav48/pXXX/pXXX_YYY.wav)",
    "libritts": "DIR/test-clean/SPK/CHAP/SPK_CHAP_P_U.wav with SPK_CHAP_P_U.normalized.txt beside it",
}


@dataclass(frozen=True)
class EvalSample:
    """One evaluation item.

    Attributes:
        id: unique within the dataset (a record's file name is derived from it).
        text: the reference text (transcript, caption or sentence to speak); captions' first reference.
        refs: every reference caption (COCO captioning), else ``[text]``.
        path: the audio or image file, ``None`` when the suite needs none.
        meta: dataset fields kept in the record (cocoid, speaker, ...).
    """

    id: str
    text: str
    refs: tuple[str, ...] = ()
    path: Path | None = None
    meta: dict[str, JSONValue] = field(default_factory=dict)


def layout_error(kind: str, root: Path | str, problem: str) -> InputError:
    return InputError(f"{root}: {problem}; expected the {kind} layout {LAYOUTS[kind]}",
                      f"see docs/eval.md ({kind})")


def _dir(kind: str, root: str | Path | None, flag: str) -> Path:
    if root is None:
        raise InputError(f"{flag} DIR is required", f"expected the {kind} layout {LAYOUTS[kind]}")
    root = Path(root)
    if not root.is_dir():
        raise layout_error(kind, root, "no such directory")
    return root


# ------------------------------------------------------------------------------------------------ COCO
def _karpathy(root: Path) -> list[dict]:
    meta = root / "dataset_coco.json"
    if not meta.is_file():
        raise layout_error("coco", root, "no dataset_coco.json")
    data = read_json(meta)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise layout_error("coco", meta, "no 'images' list")
    for i, im in enumerate(images):
        ok = (isinstance(im, dict) and all(isinstance(im.get(k), str) for k in ("filepath", "filename", "split"))
              and isinstance(im.get("cocoid"), int) and isinstance(im.get("sentences"), list)
              and all(isinstance(s, dict) and isinstance(s.get("raw"), str) for s in im["sentences"]))
        if not ok:
            raise layout_error("coco", meta, f"images[{i}] lacks filepath/filename/split/cocoid/sentences[raw]")
    return images


def read_coco_captions(root: str | Path | None, split: str = "test") -> list[EvalSample]:
    """Karpathy ``split`` images (default test: 5,000) with all their reference captions; the image files must
    exist."""
    root = _dir("coco", root, "--coco")
    out = []
    for im in _karpathy(root):
        if im["split"] != split:
            continue
        path = root / im["filepath"] / im["filename"]
        if not path.is_file():
            raise layout_error("coco", root, f"missing image {im['filepath']}/{im['filename']}")
        refs = tuple(s["raw"].strip() for s in im["sentences"])
        if not refs:
            raise layout_error("coco", root, f"image {im['cocoid']} has no sentences")
        out.append(EvalSample(str(im["cocoid"]), refs[0], refs, path, {"cocoid": im["cocoid"], "image": str(path)}))
    if not out:
        raise layout_error("coco", root, f"no images of Karpathy split {split!r}")
    return sorted(out, key=lambda s: int(s.id))


def read_coco_t2i_captions(root: str | Path | None, folder: str = "val2014") -> list[EvalSample]:
    """Every caption of the COCO 2014 validation images (Karpathy ``filepath == "val2014"``: its val, test and
    restval splits); one sample per caption, id ``cocoid-k`` (k-th sentence). Image files are not needed."""
    root = _dir("coco", root, "--coco")
    out = []
    for im in _karpathy(root):
        if im["filepath"] != folder:
            continue
        for k, s in enumerate(im["sentences"]):
            if s["raw"].strip():
                out.append(EvalSample(f"{im['cocoid']}-{k}", s["raw"].strip(), meta={"cocoid": im["cocoid"]}))
    if not out:
        raise layout_error("coco", root, f"no captions of {folder} images")
    return sorted(out, key=lambda s: tuple(int(x) for x in s.id.split("-")))


# ------------------------------------------------------------------------------------------------ speech
def _subset_dir(kind: str, root: Path, subset: str, parents: tuple[str, ...]) -> Path:
    """``root/subset``, ``root/<parent>/subset`` or ``root`` itself when it is the subset folder."""
    for cand in (root / subset, *(root / p / subset for p in parents)):
        if cand.is_dir():
            return cand
    if root.name == subset:
        return root
    raise layout_error(kind, root, f"no {subset}/ folder")


def read_librispeech(root: str | Path | None, subset: str = "test-clean") -> list[EvalSample]:
    """LibriSpeech utterances of ``subset`` (test-clean: 2,620) with their transcripts."""
    root = _dir("librispeech", root, "--librispeech")
    base = _subset_dir("librispeech", root, subset, ("LibriSpeech",))
    out = []
    for trans in sorted(base.glob("*/*/*.trans.txt")):
        for n, line in enumerate(read_text(trans, "transcript").splitlines(), 1):
            if not line.strip():
                continue
            utt, _, text = line.strip().partition(" ")
            if not text or utt.count("-") != 2:
                raise layout_error("librispeech", trans, f"line {n} is not 'SPK-CHAP-UTT TEXT'")
            flac = trans.parent / f"{utt}.flac"
            if not flac.is_file():
                raise layout_error("librispeech", trans.parent, f"missing {utt}.flac")
            spk, chap, _ = utt.split("-")
            out.append(EvalSample(utt, text.strip(), path=flac, meta={"speaker": spk, "chapter": chap}))
    if not out:
        raise layout_error("librispeech", base, "no *.trans.txt files")
    return sorted(out, key=lambda s: s.id)


def read_vctk(root: str | Path | None, mic: str = "mic1") -> list[EvalSample]:
    """VCTK utterances that have both a transcript and a recording (0.92: ``mic`` flac, else the other mic;
    0.80: wav48 wav). p315 has no recordings in either release and is skipped like every text-only item."""
    root = _dir("vctk", root, "--vctk")
    txt = root / "txt"
    if not txt.is_dir():
        raise layout_error("vctk", root, "no txt/ folder")
    other = "mic2" if mic == "mic1" else "mic1"
    out = []
    for t in sorted(txt.glob("p*/p*_*.txt")):
        spk, utt = t.parent.name, t.stem
        cands = [root / d / spk / f"{utt}_{m}.flac" for d in ("wav48_silence_trimmed",) for m in (mic, other)]
        cands.append(root / "wav48" / spk / f"{utt}.wav")
        audio = next((c for c in cands if c.is_file()), None)
        text = read_text(t, "transcript").strip()
        if audio is None or not text:
            continue
        out.append(EvalSample(utt, text, path=audio, meta={"speaker": spk}))
    if not out:
        raise layout_error("vctk", root, "no utterance with both txt/pXXX/pXXX_YYY.txt and its recording")
    return sorted(out, key=lambda s: s.id)


def read_libritts(root: str | Path | None, subset: str = "test-clean") -> list[EvalSample]:
    """LibriTTS utterances of ``subset`` (test-clean: 4,837) with their normalized text."""
    root = _dir("libritts", root, "--libritts")
    base = _subset_dir("libritts", root, subset, ("LibriTTS",))
    out = []
    for t in sorted(base.glob("*/*/*.normalized.txt")):
        utt = t.name[: -len(".normalized.txt")]
        wav = t.parent / f"{utt}.wav"
        if utt.count("_") != 3:
            raise layout_error("libritts", t.parent, f"{t.name} is not named SPK_CHAP_P_U.normalized.txt")
        if not wav.is_file():
            raise layout_error("libritts", t.parent, f"missing {utt}.wav")
        text = read_text(t, "transcript").strip()
        if text:
            spk, chap = utt.split("_")[:2]
            out.append(EvalSample(utt, text, path=wav, meta={"speaker": spk, "chapter": chap}))
    if not out:
        raise layout_error("libritts", base, "no *.normalized.txt files")
    return sorted(out, key=lambda s: s.id)


# ------------------------------------------------------------------------------------------------ sampling
def select(samples: Sequence[EvalSample], limit: int | None, seed: int) -> list[EvalSample]:
    """The fixed sampling protocol: all samples in canonical order when ``limit`` is ``None`` or covers them;
    else ``limit`` of them drawn without replacement by ``random.Random(seed)``, kept in canonical order."""
    if limit is None or limit >= len(samples):
        return list(samples)
    keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[i] for i in keep]
