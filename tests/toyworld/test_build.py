import hashlib
import json
import shutil

import pytest

from aromni.errors import InputError
from aromni.toyworld.attributes import WORLD_VERSION
from aromni.toyworld.build import build_world, is_complete
from aromni.toyworld.records import iter_records, read_jsonl
from aromni.toyworld.sizes import TASKS
from aromni.toyworld.splits import SPLITS
from aromni.toyworld.voices import SAMPLE_RATE


def _digest(root):
    h = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            h[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return h


def test_smoke_world_is_complete_and_consistent(smoke_world):
    import soundfile as sf
    from PIL import Image

    assert is_complete(smoke_world)
    manifest = json.loads((smoke_world / "manifest.json").read_text())
    assert manifest["size"] == "smoke" and manifest["seed"] == 0 and manifest["version"] == WORLD_VERSION == 2
    for split in SPLITS:
        rows = list(iter_records(smoke_world, split))
        assert {r["task"] for r in rows} == set(TASKS)
        for task in TASKS:
            assert manifest["records"][task][split] == sum(r["task"] == task for r in rows)
        for r in rows:
            for t in r["turns"]:
                for s in t["segments"]:
                    if s["type"] in ("image", "speech"):
                        assert (smoke_world / s["path"]).is_file(), s["path"]
    clips = read_jsonl(smoke_world / "speech.jsonl")
    assert len(clips) == sum(manifest["speech_clips"].values())
    for c in clips[:30]:
        wav, sr = sf.read(str(smoke_world / c["path"]))
        assert sr == SAMPLE_RATE and wav.ndim == 1
        assert 0.3 < len(wav) / sr < 8.0
        # clean clips are peak-normalised to -1 dBFS; augmented ones (random gain) only stay within full scale
        assert (0.8 < abs(wav).max() <= 0.9) if not c["augmented"] else (0.0 < abs(wav).max() <= 1.0)
    assert any(c["augmented"] for c in clips)
    assert {c["voice_kind"] for c in clips} >= {"train", "heldout", None}
    assert manifest["speech_max_s"] < 8.0  # the longest spoken phrasing (13 words) by the slowest speaker
    img = Image.open(smoke_world / read_jsonl(smoke_world / "images.jsonl")[0]["path"])
    assert img.size == (64, 64) and img.mode == "RGB"


def test_same_seed_gives_identical_files(smoke_world, tmp_path):
    again = tmp_path / "again"
    build_world(again, size="smoke", seed=0, workers=1, progress=False)
    assert _digest(again) == _digest(smoke_world)


def test_resume_and_refusals(smoke_world, tmp_path):
    # A finished world with the same settings is returned as is.
    manifest = build_world(smoke_world, size="smoke", seed=0, progress=False)
    assert manifest["complete"]
    with pytest.raises(InputError):
        build_world(smoke_world, size="smoke", seed=5, progress=False)
    # A half-built world lives in OUT.partial and is never taken for a finished one; rerunning resumes it.
    out = tmp_path / "w"
    partial = tmp_path / "w.partial"
    shutil.copytree(smoke_world, partial)
    (partial / "manifest.json").unlink()
    for p in list((partial / "speech" / "train").iterdir())[:10]:
        p.unlink()
    (partial / "build.json").write_text(json.dumps({"version": manifest["version"], "seed": 0, "size": "smoke"}))
    assert not is_complete(partial) and not out.exists()
    build_world(out, size="smoke", seed=0, workers=1, progress=False)
    assert is_complete(out) and not partial.exists()
    assert _digest(out) == _digest(smoke_world)
    # Different settings on top of an unfinished build are refused.
    (tmp_path / "v.partial").mkdir()
    (tmp_path / "v.partial" / "build.json").write_text(json.dumps({"version": 1, "seed": 3, "size": "smoke"}))
    with pytest.raises(InputError):
        build_world(tmp_path / "v", size="smoke", seed=0, progress=False)


def test_cli_build(smoke_world, capsys):
    from aromni.cli.main import main

    # Same settings: the finished world is reported, not rebuilt; other settings are refused with one line.
    assert main(["toyworld", "build", "--out", str(smoke_world), "--size", "smoke", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["size"] == "smoke" and out["images"]["train"] > 0 and out["version"] == 2
    assert main(["toyworld", "build", "--out", str(smoke_world), "--size", "small", "--quiet"]) == 2
    assert "error:" in capsys.readouterr().err
    # --version 1 asks for another world than the v2 one there: refused too
    argv = ["toyworld", "build", "--out", str(smoke_world), "--size", "smoke", "--version", "1", "--quiet"]
    assert main(argv) == 2
    assert "not this world" in capsys.readouterr().err


def test_unknown_version_is_refused(tmp_path):
    with pytest.raises(InputError, match="world version"):
        build_world(tmp_path / "w", size="smoke", version=3, progress=False)
    with pytest.raises(InputError, match="world size"):
        build_world(tmp_path / "w", size="huge", version=2, progress=False)


def test_v2_manifest_says_what_is_held_out(smoke_world):
    manifest = json.loads((smoke_world / "manifest.json").read_text())
    assert set(manifest["heldout_combos"]) == {"shape_color", "color_background", "shape_position"}
    assert len(manifest["heldout_words"]) == manifest["lexicon"]["heldout_words"] > 100
    assert manifest["heldout_phrasings"]["synonyms"] and manifest["heldout_phrasings"]["caption_frames"]
    assert manifest["voices"]["train_speakers"] > 50 and manifest["voices"]["test"]
    # the index files agree with the records
    images = read_jsonl(smoke_world / "images.jsonl")
    assert {r["heldout_combo"] for r in images if r["split"] != "test"} == {None}
    test_kinds = {r["heldout_combo"] for r in images if r["split"] == "test"}
    assert None in test_kinds and len(test_kinds) > 1
