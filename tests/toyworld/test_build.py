import hashlib
import json
import shutil

import pytest

from aromni.errors import InputError
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
    assert manifest["size"] == "smoke" and manifest["seed"] == 0 and manifest["version"] >= 1
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
    for c in clips[:20]:
        wav, sr = sf.read(str(smoke_world / c["path"]))
        assert sr == SAMPLE_RATE and wav.ndim == 1
        assert 0.3 < len(wav) / sr < 4.5
        assert 0.8 < abs(wav).max() <= 0.9
    assert manifest["speech_max_s"] < 4.5
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
    assert out["size"] == "smoke" and out["images"]["train"] > 0
    assert main(["toyworld", "build", "--out", str(smoke_world), "--size", "small", "--quiet"]) == 2
    assert "error:" in capsys.readouterr().err
