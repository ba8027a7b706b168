"""The task commands end to end on a tiny random bundle: outputs, --json payloads, one-line errors."""

import io
import json

import numpy as np
import pytest
from tinyparts import biased

from aromni.bundle import Bundle
from aromni.cli import common
from aromni.cli.main import main
from aromni.inference.omni import OmniModel
from aromni.tokenizers.speech.audio_io import save_wav


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_t2i_caption_asr(tiny_bundle, tmp_path, capsys):
    png = tmp_path / "img.png"
    out = run_json(capsys, ["t2i", "--model", str(tiny_bundle), "--text", "a red circle", "--out", str(png),
                            "--seed", "1", "--guidance-scale-text", "2.0", "--json"])
    assert png.is_file() and out["codes"] == 64 and out["stop_reason"] == "image" and out["complete"]
    # an existing output is not overwritten silently
    assert main(["t2i", "--model", str(tiny_bundle), "--text", "x", "--out", str(png)]) == 2
    assert "already exists" in capsys.readouterr().err
    out = run_json(capsys, ["caption", "--model", str(tiny_bundle), "--image", str(png), "--json",
                            "--max-new-tokens", "8"])
    assert isinstance(out["text"], str) and out["stop_reason"] in ("eos", "eom", "max_new_tokens")
    wav = tmp_path / "q.wav"
    save_wav(wav, np.sin(np.arange(4000) / 3.0).astype(np.float32) * 0.2, 22050)
    out = run_json(capsys, ["asr", "--model", str(tiny_bundle), "--audio", str(wav), "--json", "--max-new-tokens", "6"])
    assert isinstance(out["text"], str)


def test_tts_stream_reports_latency(tiny_parts, tmp_path, capsys, monkeypatch):
    text, layout, image, speech = tiny_parts
    model = OmniModel(Bundle(decoder=biased(layout, {"boa": 12.0, "speech": 6.0, "eos": -9.0}), layout=layout,
                             text=text, image=image, speech=speech))
    monkeypatch.setattr(common, "load_model", lambda args: model)
    wav = tmp_path / "o.wav"
    out = run_json(capsys, ["tts", "--text", "hello", "--out", str(wav), "--stream", "--max-new-tokens", "24",
                            "--first-chunk-frames", "2", "--json"])
    assert wav.is_file() and out["streamed"] and out["stream_exact"]
    lat = out["latency"]
    assert lat["ftl"] > 0 and lat["first_audio"] >= lat["ftl"] and lat["rtf"] > 0
    assert out["seconds"] == pytest.approx(out["speech_codes"] * speech.hop_length / speech.sample_rate, abs=1e-3)
    out = run_json(capsys, ["tts", "--text", "hello", "--out", str(wav), "--overwrite", "--max-new-tokens", "10",
                            "--json"])
    assert out["latency"]["rtf"] > 0 and not out["streamed"]


def test_chat_file_and_repl(tiny_bundle, tmp_path, capsys, monkeypatch):
    (tmp_path / "d.json").write_text(json.dumps([{"text": "hello"}, {"wav_path": "nope.wav"}]))
    argv = ["chat", "--model", str(tiny_bundle), "--input", str(tmp_path / "d.json"), "--output-dir",
            str(tmp_path / "out"), "--max-new-tokens", "6", "--seed", "0", "--json"]
    assert main(argv) == 2  # one turn failed: the summary on stdout, one error line on stderr, the log written
    captured = capsys.readouterr()
    out = json.loads(captured.out.strip().splitlines()[-1])
    assert out["turns"] == 2 and out["failed"] == 1
    assert captured.err.strip().splitlines() == [
        f"error: 1 of 2 turns failed (see {tmp_path / 'out' / 'batch_log.json'})"]
    assert (tmp_path / "out" / "batch_log.json").is_file()
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n/image missing.png\nhi\n/bogus\n/reset\n/quit\nnever\n"))
    assert main(["chat", "--model", str(tiny_bundle), "--max-new-tokens", "5", "--output-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert text.count("assistant:") == 2 and "no such image file" in text and "unknown command /bogus" in text
    assert "(history cleared)" in text


@pytest.mark.parametrize("argv, message", [
    (["asr", "--audio", "/nonexistent.wav"], "no such audio file"),
    (["caption", "--image", "/nonexistent.png"], "no such image file"),
    (["tts", "--text", "x", "--out", "x.mp3"], "expected a .wav file name"),
])
def test_bad_inputs_fail_with_one_line(tiny_bundle, capsys, argv, message):
    assert main([*argv, "--model", str(tiny_bundle)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_unreadable_files_fail_with_one_line(tiny_bundle, tmp_path, capsys):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    assert main(["caption", "--model", str(tiny_bundle), "--image", str(junk)]) == 2
    assert "not an image file" in capsys.readouterr().err
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....WAVEjunk")
    assert main(["asr", "--model", str(tiny_bundle), "--audio", str(junk)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "junk.wav" in err[0]


def test_missing_model_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.delenv("AROMNI_MODEL", raising=False)
    # no --model and no $AROMNI_MODEL: the shipped toy bundle runs (its note is held back when the run fails,
    # so the failure is still exactly one line)
    assert main(["asr", "--audio", "x.wav"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: x.wav: no such audio file (check the path)"]
    assert main(["asr", "--audio", "x.wav", "--model", "/nonexistent/bundle"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a bundle" in err[0]
    monkeypatch.setenv("AROMNI_MODEL", "/nonexistent/env-bundle")
    assert main(["asr", "--audio", "x.wav"]) == 2
    assert "/nonexistent/env-bundle: not a bundle" in capsys.readouterr().err
