"""Bad flags and values: one ``error:`` line on stderr and exit 2, before any work; the toy default model; the
thread default; output that cannot be encoded; OSErrors while writing."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch
from cliparts import run

from aromni.cli import common
from aromni.cli.main import main
from aromni.errors import InputError
from aromni.toyworld.demo import ASSETS
from aromni.utils.device import resolve_device

DEMO = ASSETS / "demo_inputs"


def assert_one_line(code, err, fragment):
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert fragment in err[0], err


@pytest.mark.parametrize("argv, fragment", [
    (["asr", "--audio", "x.wav", "--device", "foo"], "'foo' is not a device"),
    (["asr", "--audio", "x.wav", "--device", ""], "is not a device"),
    (["caption", "--image", "x.png", "--device", "mps"], "MPS (Apple GPU) is not available"),
    (["asr", "--audio", "x.wav", "--device", "meta"], "device 'meta' holds no data"),
    (["asr", "--audio", "x.wav", "--threads", "0"], "--threads: expected an integer >= 1, got 0"),
    (["asr", "--audio", "x.wav", "--threads", "-3"], "--threads: expected an integer >= 1, got -3"),
    (["asr", "--audio", "x.wav", "--threads", "two"], "--threads: expected an integer >= 1, got 'two'"),
    (["tts", "--text", "hi", "--out", "o.wav", "--temperature", "inf"], "--temperature: expected a finite number"),
    (["tts", "--text", "hi", "--out", "o.wav", "--temperature", "0"], "--temperature: expected a number > 0"),
    (["tts", "--text", "hi", "--out", "o.wav", "--top-p", "nan"], "--top-p: expected a number in (0, 1]"),
    (["tts", "--text", "hi", "--out", "o.wav", "--top-p", "1.5"], "--top-p: expected a number in (0, 1], got 1.5"),
    (["tts", "--text", "hi", "--out", "o.wav", "--top-k", "-1"], "--top-k: expected an integer >= 0"),
    (["tts", "--text", "hi", "--out", "o.wav", "--repetition-penalty", "-inf"], "--repetition-penalty"),
    (["tts", "--text", "hi", "--out", "o.wav", "--max-new-tokens", "0"], "--max-new-tokens: expected an integer"),
    (["tts", "--text", "hi", "--out", "o.wav", "--seed", "-1"], "--seed: expected a seed in [0, 2^63)"),
    (["tts", "--text", "hi", "--out", "o.wav", "--first-chunk-frames", "0"], "--first-chunk-frames"),
    (["t2i", "--text", "hi", "--out", "o.png", "--image-temperature", "nan"], "--image-temperature"),
    (["t2i", "--text", "hi", "--out", "o.png", "--guidance-scale-text", "inf"], "--guidance-scale-text"),
    (["tts", "--text", " ", "--out", "o.wav"], "--text: the text is empty"),
    (["t2i", "--text", "ok", "", "--out-dir", "d"], "--text: the text is empty"),
    (["chat", "--top-p", "0"], "--top-p: expected a number in (0, 1], got 0"),
    (["asr", "--audio", "x.wav", "--batch-size", "0"], "--batch-size: expected an integer >= 1"),
    (["asr"], "aromni asr: one of the arguments --audio --input is required"),
    (["asr", "--audio", "x.wav", "--bogus"], "unrecognized arguments: --bogus"),
    (["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
    (["asr", "--audio", "x.wav", "--dtype", "int8"], "invalid choice: 'int8'"),
    (["plot", "m.jsonl", "--out", "x.png", "--smooth", "1"], "--smooth: expected a number in [0, 1)"),
    (["demo", "--threads", "0"], "--threads: expected an integer >= 1"),
])
def test_bad_flags_are_one_line_exit_2(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys)
    assert_one_line(code, err, fragment)
    assert out == "" and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line(capsys):
    code, _, err = run(["asr", "--audio", "x.wav", "--device", "cuda:1"], capsys)
    assert_one_line(code, err, "CUDA is not available on this machine (use cpu")


def test_resolve_device_accepts_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="not a device"):
        resolve_device("gpu")


def test_no_command_and_help_still_work(capsys):
    code, out, err = run([], capsys)
    assert code == 0 and "usage: aromni" in out and "tts" in out and err == []
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "usage: aromni" in out
    code, out, _ = run(["tts", "--help"], capsys)
    assert code == 0 and "--out-dir" in out
    code, out, _ = run(["toyworld"], capsys)
    assert code == 0 and "SUBCOMMAND" in out


def test_tts_help_says_what_sampling_flags_do(capsys):
    _, out, _ = run(["tts", "--help"], capsys)
    text = " ".join(out.split())
    assert "speech codes are always chosen greedily, so it never changes the speech itself" in text
    assert "also applies to speech codes" in text  # the repetition penalty does reach them
    _, out, _ = run(["asr", "--help"], capsys)
    assert "text/speech temperature" in " ".join(out.split())


def test_model_toy_and_the_toy_default(capsys, monkeypatch):
    monkeypatch.delenv("AROMNI_MODEL", raising=False)
    code, out, err = run(["asr", "--model", "toy", "--audio", str(DEMO / "asr.wav"), "--max-new-tokens", "20"],
                         capsys)
    assert code == 0 and out.strip() and err == []
    explicit = run(["asr", "--model", str(ASSETS / "bundle"), "--audio", str(DEMO / "asr.wav"),
                    "--max-new-tokens", "20"], capsys)[1]
    assert explicit == out
    code, out2, err = run(["asr", "--audio", str(DEMO / "asr.wav"), "--max-new-tokens", "20"], capsys)
    assert code == 0 and out2 == out and err == [common.TOY_NOTE]
    monkeypatch.setenv("AROMNI_MODEL", str(ASSETS / "bundle"))
    code, out3, err = run(["asr", "--audio", str(DEMO / "asr.wav"), "--max-new-tokens", "20"], capsys)
    assert code == 0 and out3 == out and err == []


def test_missing_model_dir_is_one_line(capsys, tmp_path):
    code, _, err = run(["tts", "--model", str(tmp_path / "nope"), "--text", "hi", "--out", str(tmp_path / "o.wav")],
                       capsys)
    assert_one_line(code, err, "nope: not a bundle (no such directory)")
    assert not (tmp_path / "o.wav").exists()


def test_thread_default_rule(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert common.default_threads(5_800_000) == 1
    assert common.default_threads(7_000_000_000) is None
    assert common.default_threads(5_800_000, "meta") is None  # not a CPU run
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert common.default_threads(5_800_000) is None  # an explicit environment setting wins


def test_task_commands_apply_the_thread_default(capsys, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    assert run(["asr", "--model", "toy", "--audio", str(DEMO / "asr.wav"), "--max-new-tokens", "4"], capsys)[0] == 0
    assert torch.get_num_threads() == 1  # the toy decoder is small
    torch.set_num_threads(1)
    assert run(["asr", "--model", "toy", "--audio", str(DEMO / "asr.wav"), "--max-new-tokens", "4",
                "--threads", "2"], capsys)[0] == 0
    assert torch.get_num_threads() == 2  # an explicit --threads wins


def test_os_error_while_writing_is_one_line(capsys, monkeypatch, tmp_path):
    from aromni.cli.commands import tts

    def disk_full(args, text):
        raise OSError(28, "No space left on device", str(tmp_path / "o.wav"))

    monkeypatch.setattr(tts, "run_one", disk_full)
    code, _, err = run(["tts", "--text", "hi", "--out", str(tmp_path / "o.wav")], capsys)
    assert_one_line(code, err, "o.wav: No space left on device (free some space or write elsewhere)")

    def denied(args, text):
        raise PermissionError(13, "Permission denied", "/root/x.wav")

    monkeypatch.setattr(tts, "run_one", denied)
    code, _, err = run(["tts", "--text", "hi", "--out", str(tmp_path / "o.wav")], capsys)
    assert_one_line(code, err, "/root/x.wav: Permission denied")


def strict_stream() -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")


def test_unencodable_output_never_crashes(monkeypatch):
    import argparse

    out = strict_stream()
    monkeypatch.setattr(sys, "stdout", out)
    bad = "a\udcffb\ud800 é"
    common.emit(argparse.Namespace(json=True), {"text": bad}, bad)
    common.emit(argparse.Namespace(json=False), {"text": bad}, bad)
    out.flush()
    lines = out.buffer.getvalue().decode("utf-8").splitlines()
    assert json.loads(lines[0]) == {"text": bad}  # escaped JSON round-trips to the same string
    assert lines[1] == "a\\udcffb\\ud800 é"
    assert common.dumps_line({"t": "é"}) == '{"t": "é"}'  # plain non-ASCII stays readable


def test_error_line_with_a_surrogate_is_printed(monkeypatch, tmp_path):
    err = strict_stream()
    monkeypatch.setattr(sys, "stderr", err)
    name = str(tmp_path / "caf\udce9.wav")  # a non-UTF-8 file name as Python decodes it from argv
    assert main(["asr", "--model", "toy", "--audio", name]) == 2
    err.flush()
    text = err.buffer.getvalue().decode("utf-8").strip().splitlines()
    assert len(text) == 1 and text[0].startswith("error: ") and "caf\\udce9.wav" in text[0]
