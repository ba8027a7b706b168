"""``aromni demo`` with a bundle: every task on the shipped inputs; the shipped inputs are what inputs.json says."""

from __future__ import annotations

import json

from evalparts import bundle_fixture  # noqa: F401 (fixtures)

from aromni.cli.main import main
from aromni.toyworld import demo


def test_run_demo_writes_every_output(bundle, tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.run_demo(bundle, out, seed=1) == 0
    printed = capsys.readouterr().out
    assert "aromni demo" in printed and "streaming TTS" in printed
    summary = json.loads((out / "summary.json").read_text())
    vivo = ["OmniVIVO (image + speech)"] if demo.find_vivo() is not None else []  # the shipped vivo bundle
    assert [r["task"] for r in summary["tasks"]] == ["TTS (streamed)", "ASR", "caption", "T2I (CFG)", "S→I", "I+S→S",
                                                     "chat turn 1", "chat turn 2", *vivo]
    assert summary["seed"] == 1
    # files the random model always produces (text, T2I images); speech and S→I images depend on its choices
    for name in ("asr.txt", "caption.txt", "t2i.png", "chat_turn1.png", "chat_turn2.txt", "s2i.txt",
                 *(("vivo.png", "vivo.wav") if vivo else ())):
        assert (out / name).is_file(), name
    for row in summary["tasks"]:
        for name in row["output"].split(" + "):  # OmniVIVO's row names two files
            if name.endswith((".png", ".wav")):
                assert (out / name).is_file(), name
    t2i = next(r for r in summary["tasks"] if r["task"] == "T2I (CFG)")
    assert t2i["judge"].startswith("read as: ") and t2i["verdict"].endswith("attributes as asked")
    assert set(demo.OUTPUTS) >= {p.name for p in out.iterdir()}
    # a rerun replaces its own files; a folder with the user's files is refused
    assert demo.run_demo(bundle, out) == 0
    (out / "notes.txt").write_text("mine")
    assert main(["demo", "--model", str(bundle), "--out", str(out)]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_find_bundle(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "ASSETS", tmp_path)
    assert demo.find_bundle() is None
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "config.json").write_text("{}")
    assert demo.find_bundle() == tmp_path / "bundle"


def test_find_vivo_needs_both_the_export_and_its_vq(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "ASSETS", tmp_path)
    assert demo.find_vivo() is None
    for part in ("omnivivo", "vq"):
        assert demo.find_vivo() is None
        (tmp_path / "vivo" / part).mkdir(parents=True)
        (tmp_path / "vivo" / part / "config.json").write_text("{}")
    assert demo.find_vivo() == (tmp_path / "vivo" / "omnivivo", tmp_path / "vivo" / "vq")


def test_shipped_inputs_are_small_and_described_right():
    from aromni.toyworld.judges.image import ImageJudge
    from aromni.toyworld.judges.speech import SpeechJudge
    from aromni.toyworld.judges.store import speech_judge_dir

    files = [p for p in demo.INPUTS.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 300_000
    meta = json.loads((demo.INPUTS / "inputs.json").read_text())
    clips = meta["speech"]
    # the demo inputs are version-2 test clips, read by the judge of the world the shipped bundle learned
    judge = SpeechJudge.load(speech_judge_dir(demo.SHIPPED_WORLD_VERSION))
    heard = judge.transcribe_files([demo.INPUTS / c["file"] for c in clips.values()])
    assert heard == [c["transcript"] for c in clips.values()]
    assert ImageJudge.load().read_files([demo.INPUTS / meta["image"]["file"]]) == [meta["image"]["attributes"]]
    from aromni.toyworld.evaluation.metrics import read_attributes

    assert read_attributes(clips["s2i"]["transcript"]) == clips["s2i"]["attributes"]
