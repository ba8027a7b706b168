"""Batch inputs of the task commands (several files, folders, globs, requests.jsonl) on the shipped toy bundle:
results in input order, one bad input recorded rather than fatal, media written all-or-nothing, nothing
overwritten."""

from __future__ import annotations

import json
import shutil

import pytest
from cliparts import run

from aromni.cli import batch
from aromni.cli.main import main
from aromni.errors import AromniError, InputError
from aromni.inference.omni import OmniModel
from aromni.toyworld.demo import ASSETS

DEMO = ASSETS / "demo_inputs"
FAST = ["--model", "toy", "--max-new-tokens", "24"]


@pytest.fixture
def audio_dir(tmp_path):
    d = tmp_path / "audio"
    (d / "sub").mkdir(parents=True)
    shutil.copy(DEMO / "asr.wav", d / "a.wav")
    shutil.copy(DEMO / "question.wav", d / "sub" / "b.wav")
    (d / "notes.txt").write_text("not audio")
    (d / ".hidden.wav").write_bytes(b"junk")  # hidden files are skipped
    return d


def test_expand_paths(audio_dir, tmp_path):
    paths, is_batch = batch.expand_paths([str(audio_dir / "a.wav")], batch.AUDIO_SUFFIXES, "audio")
    assert paths == [str(audio_dir / "a.wav")] and not is_batch
    paths, is_batch = batch.expand_paths([str(audio_dir)], batch.AUDIO_SUFFIXES, "audio")
    assert paths == [str(audio_dir / "a.wav"), str(audio_dir / "sub" / "b.wav")] and is_batch
    paths, _ = batch.expand_paths([str(audio_dir / "*.wav"), "missing.wav"], batch.AUDIO_SUFFIXES, "audio")
    assert paths == [str(audio_dir / "a.wav"), "missing.wav"]  # a missing file fails as its own input
    with pytest.raises(InputError, match="matches no files"):
        batch.expand_paths([str(tmp_path / "*.flac")], batch.AUDIO_SUFFIXES, "audio")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no audio files"):
        batch.expand_paths([str(tmp_path / "empty")], batch.AUDIO_SUFFIXES, "audio")


def test_asr_batch_matches_single_runs_and_records_a_bad_input(audio_dir, capsys):
    single = [run(["asr", *FAST, "--audio", str(p), "--json"], capsys)[1] for p in
              (audio_dir / "a.wav", audio_dir / "sub" / "b.wav")]
    single = [json.loads(s)["text"] for s in single]
    code, out, err = run(["asr", *FAST, "--audio", str(audio_dir), str(audio_dir / "nope.wav"), "--json",
                          "--batch-size", "2"], capsys)
    lines = [json.loads(ln) for ln in out.splitlines()]
    assert [r["index"] for r in lines] == [0, 1, 2]
    assert [r.get("text") for r in lines[:2]] == single  # greedy: batched rows equal single runs
    assert "no such audio file" in lines[2]["error"] and "text" not in lines[2]
    assert code == 2 and err == ["error: 1 of 3 inputs failed (see the 'error' fields above)"]


def test_caption_requests_file_to_results_file(tmp_path, capsys):
    shutil.copy(DEMO / "image.png", tmp_path / "pic.png")
    req = tmp_path / "requests.jsonl"
    req.write_text(json.dumps({"image": "pic.png", "id": "first"}) + "\n\n" + json.dumps({"image": str(
        tmp_path / "pic.png")}) + "\n")
    results = tmp_path / "out" / "results.jsonl"
    code, out, err = run(["caption", *FAST, "--input", str(req), "--output", str(results)], capsys)
    assert code == 0 and err == [] and out.strip() == f"wrote {results} (2 input(s), 0 failed)"
    recs = [json.loads(ln) for ln in results.read_text().splitlines()]
    assert recs[0]["id"] == "first" and recs[0]["image"] == str(tmp_path / "pic.png")  # relative to the file
    assert recs[0]["text"] == recs[1]["text"] and recs[1]["stop_reason"]
    before = results.read_text()
    code, _, err = run(["caption", *FAST, "--input", str(req), "--output", str(results)], capsys)
    assert code == 2 and len(err) == 1 and "already exists" in err[0] and results.read_text() == before


@pytest.mark.parametrize("line, fragment", [
    ('{"image": "a.png", "instruction": "x"}', "unknown field(s) 'instruction'"),
    ('["a.png"]', "expected a JSON object, got list"),
    ('{"image": 3}', "'image' must be a non-empty string"),
    ('{"image": "a.png"', "not valid JSON"),
    ('{"image": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
])
def test_bad_requests_files_are_refused_before_work(tmp_path, capsys, line, fragment):
    req = tmp_path / "r.jsonl"
    req.write_text('{"image": "ok.png"}\n' + line + "\n")
    code, out, err = run(["caption", "--model", str(tmp_path / "no-model-needed"), "--input", str(req)], capsys)
    assert code == 2 and len(err) == 1 and "r.jsonl:2: " in err[0] and fragment in err[0], err


def test_tts_batch_names_outputs_and_refuses_overwrites(tmp_path, capsys):
    req = tmp_path / "r.jsonl"
    req.write_text(json.dumps({"text": "a big red square", "out": "named.wav"}) + "\n" +
                   json.dumps({"text": "a small blue circle"}) + "\n")
    out_dir = tmp_path / "wavs"
    code, out, err = run(["tts", *FAST, "--input", str(req), "--out-dir", str(out_dir), "--json"], capsys)
    assert code == 0 and err == []
    recs = [json.loads(ln) for ln in out.splitlines()]
    assert [r["out"] for r in recs] == [str(out_dir / "named.wav"), str(out_dir / "0001.wav")]
    assert sorted(p.name for p in out_dir.iterdir()) == ["0001.wav", "named.wav"]  # no temporary left
    assert all(r["speech_codes"] > 0 and r["sample_rate"] == 16000 for r in recs)
    stamp = (out_dir / "named.wav").read_bytes()
    code, _, err = run(["tts", *FAST, "--input", str(req), "--out-dir", str(out_dir)], capsys)
    assert code == 2 and len(err) == 1 and "named.wav already exists (request 0)" in err[0]
    assert (out_dir / "named.wav").read_bytes() == stamp
    assert run(["tts", *FAST, "--input", str(req), "--out-dir", str(out_dir), "--overwrite"], capsys)[0] == 0
    # outputs the batch cannot name are refused before any work
    code, _, err = run(["tts", "--model", "toy", "--text", "a", "b"], capsys)
    assert code == 2 and "request 0 has no output file (pass --out-dir DIR" in err[0]
    code, _, err = run(["tts", "--model", "toy", "--text", "a", "b", "--out-dir", str(tmp_path / "x"), "--stream"],
                       capsys)
    assert code == 2 and "--stream runs a single --text" in err[0]
    code, _, err = run(["tts", "--model", "toy", "--text", "a", "b", "--out", str(tmp_path / "x.wav")], capsys)
    assert code == 2 and "--out names the file of a single --text" in err[0]
    req.write_text('{"text": "a", "out": "same.wav"}\n{"text": "b", "out": "same.wav"}\n')
    code, _, err = run(["tts", "--model", "toy", "--input", str(req), "--out-dir", str(out_dir)], capsys)
    assert code == 2 and "both write" in err[0]


def _failing_on(word, exc=AromniError):
    """OmniModel.tts that fails every call whose texts include ``word``."""
    original = OmniModel.tts

    def tts(self, text, **kw):
        if word in (text if isinstance(text, str) else " ".join(text)):
            raise exc(f"cannot say {word}")
        return original(self, text, **kw)

    return tts


def test_a_failing_input_does_not_stop_the_batch(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(OmniModel, "tts", _failing_on("BAD"))
    out_dir = tmp_path / "wavs"
    code, out, err = run(["tts", *FAST, "--text", "red", "BAD", "blue", "--out-dir", str(out_dir),
                          "--output", str(tmp_path / "res.jsonl")], capsys)
    recs = [json.loads(ln) for ln in (tmp_path / "res.jsonl").read_text().splitlines()]
    assert [r.get("error") for r in recs] == [None, "cannot say BAD", None]  # the batch was retried one by one
    assert sorted(p.name for p in out_dir.iterdir()) == ["0000.wav", "0002.wav"]
    assert code == 2 and err == [f"error: 1 of 3 inputs failed (see the 'error' fields in {tmp_path / 'res.jsonl'})"]


def test_media_outputs_are_all_or_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(OmniModel, "tts", _failing_on("STOP", KeyboardInterrupt))
    out_dir = tmp_path / "wavs"
    code = main(["tts", *FAST, "--text", "red", "blue", "STOP", "--batch-size", "2", "--out-dir", str(out_dir)])
    assert code == 130  # interrupted in the second batch: the first batch's files are not published either
    assert list(out_dir.iterdir()) == []


def test_t2i_several_texts(tmp_path, capsys):
    out_dir = tmp_path / "imgs"
    code, out, err = run(["t2i", "--model", "toy", "--text", "a red circle", "a blue square", "--out-dir",
                          str(out_dir), "--batch-size", "1", "--seed", "0", "--json"], capsys)
    assert code == 0 and err == []
    recs = [json.loads(ln) for ln in out.splitlines()]
    assert [r["out"] for r in recs] == [str(out_dir / "0000.png"), str(out_dir / "0001.png")]
    assert all(r["complete"] and r["codes"] > 0 for r in recs)
    assert sorted(p.name for p in out_dir.iterdir()) == ["0000.png", "0001.png"]
