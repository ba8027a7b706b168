"""``aromni demo`` never leaves half of its outputs behind, and a missing optional package is one line."""

from __future__ import annotations

import sys

import pytest
from evalparts import bundle_fixture  # noqa: F401 (fixtures)

from aromni.cli.main import main
from aromni.toyworld import demo


def _boom(self):
    raise RuntimeError("a task failed half way")


def test_a_failed_run_leaves_nothing_behind(bundle, tmp_path, monkeypatch):
    out = tmp_path / "demo"
    monkeypatch.setattr(demo._Demo, "caption", _boom)  # after tts.wav and asr.txt were written
    with pytest.raises(RuntimeError):
        demo.run_demo(bundle, out)
    assert out.is_dir() and list(out.iterdir()) == []


def test_a_failed_rerun_keeps_the_previous_run(bundle, tmp_path, monkeypatch):
    out = tmp_path / "demo"
    assert demo.run_demo(bundle, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(demo._Demo, "t2i", _boom)
    with pytest.raises(RuntimeError):
        demo.run_demo(bundle, out, seed=3)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_missing_extra_is_one_line_and_leaves_nothing(bundle, tmp_path, monkeypatch, capsys):
    out = tmp_path / "demo"
    monkeypatch.setitem(sys.modules, "jiwer", None)  # `import jiwer` now raises ImportError
    assert main(["demo", "--model", str(bundle), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: word error rates needs the 'jiwer' package, which is not installed "
                   "(pip install \"aromni[audio]\")"]
    assert list(out.iterdir()) == []


def test_out_naming_a_file_and_bad_threads_are_one_line(bundle, tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("mine")
    assert main(["demo", "--model", str(bundle), "--out", str(f)]) == 2
    assert main(["demo", "--random", "--out", str(f)]) == 2
    assert main(["demo", "--threads", "0", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("error: ") for e in err)
    assert "is a file" in err[0] and "--threads" in err[2]
    assert f.read_text() == "mine"


def test_a_killed_runs_staging_folder_is_replaced(bundle, tmp_path):
    out = tmp_path / "demo"
    (out / demo.STAGING).mkdir(parents=True)
    (out / demo.STAGING / "tts.wav").write_bytes(b"half")
    assert demo.run_demo(bundle, out) == 0
    assert not (out / demo.STAGING).exists() and (out / "summary.json").is_file()
