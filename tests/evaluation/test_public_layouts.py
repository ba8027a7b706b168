"""The dataset readers on tiny fixtures in each published layout (COCO + Karpathy JSON, LibriSpeech, VCTK 0.92
and 0.80, LibriTTS), the fixed sampling protocol, and one-line errors naming the expected layout.

The ``write_*`` builders are shared with the suites' tests (``from test_public_layouts import ...``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aromni.cli.main import main
from aromni.errors import InputError
from aromni.evaluation.datasets import (
    LAYOUTS,
    read_coco_captions,
    read_coco_t2i_captions,
    read_librispeech,
    read_libritts,
    read_vctk,
    select,
)

SR = 16000


def _tone(seconds: float, freq: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write_audio(path: Path, wav: np.ndarray, sr: int = SR) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav, sr)


COCO_IMAGES = [  # (cocoid, filepath, split, sentences)
    (391895, "val2014", "test", ["A man with a red helmet on a small moped.", "Man riding a motor bike."]),
    (522418, "val2014", "test", ["A woman wearing a net on her head cutting a cake.", "A woman cutting a cake."]),
    (184613, "val2014", "test", ["A child holding a flowered umbrella.", "A young boy with an umbrella."]),
    (318219, "val2014", "val", ["A computer monitor on a desk.", "A desk with a keyboard."]),
    (554625, "train2014", "train", ["A boy brushing his teeth."]),
]


def write_coco(root: Path) -> Path:
    """dataset_coco.json (Karpathy) and the val2014/train2014 JPEGs it names."""
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for cocoid, folder, split, sents in COCO_IMAGES:
        name = f"COCO_{folder}_{cocoid:012d}.jpg"
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / folder / name)
        images.append({"filepath": folder, "filename": name, "split": split, "cocoid": cocoid, "imgid": len(images),
                       "sentences": [{"raw": s, "tokens": s.lower().split(), "sentid": k} for k, s in
                                     enumerate(sents)]})
    (root / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    return root


LIBRISPEECH = {"1089-134686": ["HE HOPED THERE WOULD BE STEW FOR DINNER", "STUFF IT INTO YOU HIS BELLY COUNSELLED HIM"],
               "121-121726": ["ALSO A POPULAR CONTRIVANCE"]}


def write_librispeech(root: Path) -> Path:
    """LibriSpeech/test-clean/SPK/CHAP/SPK-CHAP.trans.txt + flac."""
    base = root / "LibriSpeech" / "test-clean"
    for k, (sc, lines) in enumerate(LIBRISPEECH.items()):
        spk, chap = sc.split("-")
        d = base / spk / chap
        d.mkdir(parents=True)
        rows = []
        for u, text in enumerate(lines):
            utt = f"{sc}-{u:04d}"
            _write_audio(d / f"{utt}.flac", _tone(0.4 + 0.1 * u, 220 + 40 * k))
            rows.append(f"{utt} {text}")
        (d / f"{sc}.trans.txt").write_text("\n".join(rows) + "\n")
    return root


VCTK = {"p225_001": "Please call Stella.", "p225_002": "Ask her to bring these things with her from the store.",
        "p226_001": "Six spoons of fresh snow peas, five thick slabs of blue cheese."}


def write_vctk(root: Path, release: str = "0.92") -> Path:
    """txt/pXXX/pXXX_YYY.txt with wav48_silence_trimmed/.../_mic1.flac (0.92) or wav48/.../.wav (0.80); p315
    has a transcript only (as in the real corpus)."""
    for utt, text in {**VCTK, "p315_001": "No recording here."}.items():
        spk = utt.split("_")[0]
        (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
        (root / "txt" / spk / f"{utt}.txt").write_text(text + "\n")
        if spk == "p315":
            continue
        if release == "0.92":
            _write_audio(root / "wav48_silence_trimmed" / spk / f"{utt}_mic1.flac", _tone(0.5, 300), 48000)
        else:
            _write_audio(root / "wav48" / spk / f"{utt}.wav", _tone(0.5, 300), 48000)
    return root


LIBRITTS = {"1089_134686_000001_000000": "He hoped there would be stew for dinner.",
            "1089_134686_000002_000000": "Stuff it into you, his belly counselled him.",
            "121_121726_000004_000003": "Also a popular contrivance."}


def write_libritts(root: Path) -> Path:
    """LibriTTS/test-clean/SPK/CHAP/SPK_CHAP_P_U.wav + .normalized.txt (+ .original.txt)."""
    for utt, text in LIBRITTS.items():
        spk, chap = utt.split("_")[:2]
        d = root / "LibriTTS" / "test-clean" / spk / chap
        _write_audio(d / f"{utt}.wav", _tone(0.5, 250), 24000)
        (d / f"{utt}.normalized.txt").write_text(text)
        (d / f"{utt}.original.txt").write_text(text.upper())
    return root


# ------------------------------------------------------------------------------------------------ tests
def test_coco_karpathy_test_split_and_val2014_captions(tmp_path):
    root = write_coco(tmp_path / "coco")
    test = read_coco_captions(root)
    assert [s.id for s in test] == ["184613", "391895", "522418"]  # canonical order: by cocoid
    assert test[1].refs == tuple(COCO_IMAGES[0][3]) and test[1].path == root / "val2014" / \
        "COCO_val2014_000000391895.jpg"
    caps = read_coco_t2i_captions(root)  # every caption of every val2014 image (test + val splits), no train
    assert [s.id for s in caps] == ["184613-0", "184613-1", "318219-0", "318219-1", "391895-0", "391895-1",
                                    "522418-0", "522418-1"]
    assert caps[2].text == "A computer monitor on a desk."


def test_librispeech_vctk_libritts(tmp_path):
    ls = read_librispeech(write_librispeech(tmp_path / "ls"))
    assert [s.id for s in ls] == ["1089-134686-0000", "1089-134686-0001", "121-121726-0000"]
    assert ls[0].text == "HE HOPED THERE WOULD BE STEW FOR DINNER" and ls[0].path.suffix == ".flac"
    assert read_librispeech(tmp_path / "ls" / "LibriSpeech" / "test-clean") == ls  # the subset folder itself
    for release in ("0.92", "0.80"):
        vctk = read_vctk(write_vctk(tmp_path / f"vctk{release}", release))
        assert [s.id for s in vctk] == sorted(VCTK)  # p315: no recording, skipped
        assert vctk[0].text == "Please call Stella." and vctk[0].meta["speaker"] == "p225"
    tts = read_libritts(write_libritts(tmp_path / "ltts"))
    assert [s.id for s in tts] == sorted(LIBRITTS)
    assert tts[0].text == LIBRITTS[tts[0].id]


def test_select_is_seeded_and_keeps_canonical_order(tmp_path):
    caps = read_coco_t2i_captions(write_coco(tmp_path / "coco"))
    a, b, c = select(caps, 3, 0), select(caps, 3, 0), select(caps, 3, 1)
    assert a == b and a != c and len(a) == 3
    assert [caps.index(s) for s in a] == sorted(caps.index(s) for s in a)
    assert select(caps, None, 5) == caps and select(caps, 100, 5) == caps


def _one_line(e: InputError) -> str:
    msg = str(e)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("kind", ["coco", "librispeech", "vctk", "libritts"])
def test_missing_dataset_names_the_layout(tmp_path, kind):
    reader = {"coco": read_coco_captions, "librispeech": read_librispeech, "vctk": read_vctk,
              "libritts": read_libritts}[kind]
    for root in (tmp_path / "absent", tmp_path):  # no such directory; an empty directory
        with pytest.raises(InputError) as e:
            reader(root)
        assert LAYOUTS[kind] in _one_line(e.value)


def test_malformed_datasets(tmp_path):
    coco = write_coco(tmp_path / "coco")
    (coco / "dataset_coco.json").write_text(json.dumps({"images": [{"filepath": "val2014"}]}))
    with pytest.raises(InputError, match="lacks filepath"):
        read_coco_captions(coco)
    (coco / "dataset_coco.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_coco_captions(coco)
    coco2 = write_coco(tmp_path / "coco2")
    next((coco2 / "val2014").glob("*391895*")).unlink()
    with pytest.raises(InputError, match="missing image val2014/COCO_val2014_000000391895.jpg"):
        read_coco_captions(coco2)
    ls = write_librispeech(tmp_path / "ls")
    trans = next(ls.rglob("1089-134686.trans.txt"))
    trans.write_text("garbage\n")
    with pytest.raises(InputError, match="not 'SPK-CHAP-UTT TEXT'"):
        read_librispeech(ls)
    ltts = write_libritts(tmp_path / "ltts")
    next(ltts.rglob("1089_134686_000001_000000.wav")).unlink()
    with pytest.raises(InputError, match="missing 1089_134686_000001_000000.wav") as e:
        read_libritts(ltts)
    assert LAYOUTS["libritts"] in _one_line(e.value)


def test_cli_bad_dataset_is_one_line(tmp_path, capsys):
    """Before any model loads: a missing --librispeech and an empty directory give one error line each."""
    out = str(tmp_path / "out")
    assert main(["eval", "--suite", "librispeech", "--model", "toy", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--librispeech DIR is required" in err and "test-clean" in err
    assert main(["eval", "--suite", "librispeech", "--model", "toy", "--out", out, "--librispeech",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no test-clean/ folder" in err and LAYOUTS["librispeech"] in err
    assert main(["eval", "--suite", "coco-t2i", "--model", "toy", "--out", out, "--coco", str(tmp_path)]) == 2
    assert "needs --clip DIR" in capsys.readouterr().err
    assert main(["eval", "--suite", "librispeech", "--model", "toy", "--world", out, "--out", out]) == 2
    assert "--world belong to --suite toy" in capsys.readouterr().err
    assert main(["eval", "--suite", "vivo,librispeech", "--model", "toy"]) == 2
    assert "cannot share a run" in capsys.readouterr().err
    assert main(["eval", "--suite", "nonsense", "--model", "toy"]) == 2
    assert "unknown suite nonsense" in capsys.readouterr().err
