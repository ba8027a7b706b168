"""Fuzz: audio inputs (files and waveforms) through ``aromni asr --audio``, the chat's audio turn and the API."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from fuzzparts import MAX_NEW, SR, audio_files, task_args, tone, wav_bytes

FAMILY = "audio"

FILES = audio_files()
FILE_IDS = [f[0] for f in FILES]
OPTS = {"max_new_tokens": MAX_NEW, "seed": 0}


def _text(out) -> None:
    for o in out if isinstance(out, list) else [out]:
        assert isinstance(o.text, str), type(o.text)


def _special_path(case, kind: str):
    """Paths that are not regular audio files: ``(path, expect)``."""
    if kind == "missing":
        return case.inputs / "nope.wav", "error"
    if kind == "directory":
        d = case.inputs / "dir.wav"
        d.mkdir()
        return d, "error"
    if kind == "dev_null":
        return "/dev/null", "error"
    if kind == "fifo":
        p = case.inputs / "fifo.wav"
        os.mkfifo(p)
        return p, "error"
    if kind == "symlink_loop":
        p = case.inputs / "loop.wav"
        p.symlink_to(p)
        return p, "error"
    if kind == "dangling_symlink":
        p = case.inputs / "dangling.wav"
        p.symlink_to(case.inputs / "gone.wav")
        return p, "error"
    if kind == "empty_string":
        return "", "error"
    if kind == "nul_in_path":
        return str(case.inputs / "a\x00b.wav"), "error"
    if kind == "very_long_name":
        return str(case.inputs / ("x" * 300 + ".wav")), "error"
    raise AssertionError(kind)


SPECIAL = ["missing", "directory", "dev_null", "fifo", "symlink_loop", "dangling_symlink", "empty_string",
           "nul_in_path", "very_long_name"]


# ------------------------------------------------------------------------------------------------ files
@pytest.mark.parametrize("name, fname, data, expect", FILES, ids=FILE_IDS)
def test_cli_asr_file(case, fuzz_bundle, name, fname, data, expect):
    path = case.write(fname, data)
    case.cli(["asr", "--audio", str(path), *task_args(fuzz_bundle)], expect=expect)


@pytest.mark.parametrize("name, fname, data, expect", FILES, ids=FILE_IDS)
def test_api_asr_file(case, fuzz_model, name, fname, data, expect):
    path = case.write(fname, data)
    case.api(lambda: fuzz_model.asr(str(path), options=OPTS), expect=expect, check=_text)


@pytest.mark.parametrize("kind", SPECIAL)
def test_cli_asr_special_path(case, fuzz_bundle, kind):
    path, expect = _special_path(case, kind)
    case.cli(["asr", "--audio", str(path), *task_args(fuzz_bundle)], expect=expect)


@pytest.mark.parametrize("kind", SPECIAL)
def test_api_asr_special_path(case, fuzz_model, kind):
    path, expect = _special_path(case, kind)
    case.api(lambda: fuzz_model.asr(path, options=OPTS), expect=expect, check=_text)


REPL_FILES = ["zero_byte_wav", "truncated_half", "random_wav", "nan_samples", "one_sample", "longer_than_context",
              "rate_7hz", "rate_44100", "stereo_44100", "pcm_24", "header_claims_hours", "png_named_wav"]


@pytest.mark.parametrize("name", REPL_FILES)
def test_cli_chat_repl_audio_turn(case, fuzz_bundle, name):
    _, fname, data, expect = FILES[FILE_IDS.index(name)]
    path = case.write(fname, data)
    case.cli(["chat", *task_args(fuzz_bundle), "--output-dir", str(case.out / "chat")],
             stdin=f"/audio {path}\n/quit\n", expect=expect, repl=True)


@pytest.mark.parametrize("name", REPL_FILES[:8])
def test_api_chat_audio_file(case, fuzz_model, name):
    _, fname, data, expect = FILES[FILE_IDS.index(name)]
    path = case.write(fname, data)
    session = fuzz_model.chat(options=OPTS)
    case.api(lambda: session.send(audio=str(path)), expect=expect, check=_text)


# ------------------------------------------------------------------------------------------------ waveforms
def _nan_wave():
    x = tone(0.5)
    x[10] = np.nan
    return x


ARRAYS = [
    ("nan_array", _nan_wave, SR, "error"),
    ("inf_array", lambda: np.full(SR // 2, np.inf, dtype=np.float32), SR, "error"),
    ("float64_ok", lambda: tone(0.5).astype(np.float64), SR, "ok"),
    ("torch_tensor_ok", lambda: torch.from_numpy(tone(0.5)), SR, "ok"),
    ("list_of_floats_ok", lambda: [float(v) for v in tone(0.2)], SR, "ok"),
    ("int16_pcm_values", lambda: (tone(0.5) * 32767).astype(np.int16), SR, "any"),
    ("int8_array", lambda: (tone(0.5) * 127).astype(np.int8), SR, "any"),
    ("bool_array", lambda: np.ones(SR // 4, dtype=bool), SR, "any"),
    ("one_sample_array", lambda: np.array([0.1], dtype=np.float32), SR, "any"),
    ("empty_array", lambda: np.zeros(0, dtype=np.float32), SR, "error"),
    ("none", lambda: None, SR, "error"),
    ("scalar", lambda: 0.5, SR, "error"),
    ("numpy_scalar", lambda: np.float32(0.5), SR, "error"),
    ("complex_array", lambda: tone(0.2).astype(np.complex64) * (1 + 1j), SR, "error"),
    ("three_d_array", lambda: np.zeros((2, 2, 4000), dtype=np.float32), SR, "error"),
    ("channels_first_stereo", lambda: tone(0.5, channels=2).T.copy(), SR, "any"),
    ("string_not_a_path", lambda: "definitely not audio", SR, "error"),
    ("bytes_wav", lambda: wav_bytes(tone(0.2), SR), SR, "error"),
    ("object_array", lambda: np.array([None, 1.0, "x"], dtype=object), SR, "error"),
    ("dict", lambda: {"audio": [0.0] * 10}, SR, "error"),
    ("nested_list_batch", lambda: [[0.1] * 4000], SR, "any"),
    ("longer_than_context", lambda: tone(20.0, 8000), 8000, "error"),
    ("no_sample_rate", lambda: tone(0.5), None, "error"),
    ("rate_zero", lambda: tone(0.5), 0, "error"),
    ("rate_negative", lambda: tone(0.5), -16000, "error"),
    ("rate_nan", lambda: tone(0.5), float("nan"), "error"),
    ("rate_inf", lambda: tone(0.5), float("inf"), "error"),
    ("rate_string", lambda: tone(0.5), "16000", "any"),
    ("rate_float_odd", lambda: tone(0.5, 44100), 44100.5, "any"),
    ("rate_1hz_upsampled_past_context", lambda: tone(100.0, 1), 1, "error"),
    ("rate_7hz", lambda: tone(3.0, 7), 7, "any"),
    ("rate_huge", lambda: tone(0.01, 10**9), 10**9, "any"),
    ("rate_44100_ok", lambda: tone(0.5, 44100), 44100, "ok"),
    ("rate_192000_ok", lambda: tone(0.2, 192000), 192000, "ok"),
]
ARRAY_IDS = [a[0] for a in ARRAYS]


@pytest.mark.parametrize("name, make, rate, expect", ARRAYS, ids=ARRAY_IDS)
def test_api_asr_waveform(case, fuzz_model, name, make, rate, expect):
    audio = make()
    case.api(lambda: fuzz_model.asr(audio, sample_rate=rate, options=OPTS), expect=expect, check=_text)


CHAT_ARRAYS = ["nan_array", "empty_array", "none", "scalar", "complex_array", "three_d_array", "longer_than_context",
               "rate_zero", "rate_nan", "rate_44100_ok", "bytes_wav"]


@pytest.mark.parametrize("name", CHAT_ARRAYS)
def test_api_chat_waveform(case, fuzz_model, name):
    _, make, rate, expect = ARRAYS[ARRAY_IDS.index(name)]
    audio = make()
    session = fuzz_model.chat(options=OPTS)
    if name == "none":  # audio=None with no text is "no input at all"
        case.api(lambda: session.send(audio=None, sample_rate=rate), expect="error", check=_text)
        return
    case.api(lambda: session.send(audio=audio, sample_rate=rate), expect=expect, check=_text)
