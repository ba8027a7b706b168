"""``aromni vivo`` on a tiny untrained OmniVIVO export: it writes vivo.png / vivo.wav / vivo.json (the API's image,
audio and codes for the same seed) and prints the timing line; ``--stream`` reports each audio chunk's arrival
and writes the same files; a rerun into the same folder replaces only its own files, and files it did not write
are refused (unless ``--overwrite``); every bad input is one ``error:`` line with exit code 2."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cliparts import run
from PIL import Image

from aromni.omnivivo.api import VivoPipeline
from aromni.omnivivo.t2i_generate import T2ISampling
from aromni.tokenizers.image.llamagen_vq import LlamaGenVQ
from aromni.tokenizers.image.llamagen_vq_config import LlamaGenVQConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "omnivivo"))
from test_vivo_api import build_tiny_export  # the tiny export the API tests build

PROMPT = "a red circle at the top left"
TIMING_LINE = re.compile(r"image [0-9.]+ s; speech FTL \d+ ms, first audio \d+ ms, RTF [0-9.]+$")


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    return build_tiny_export(tmp_path_factory.mktemp("cli_vivo"))


def _vivo(parts, out, *extra):
    return ["vivo", PROMPT, "--model", str(parts["export"]), "--vq", str(parts["vq"]), "--out", str(out), *extra]


def _assert_one_line(code, err, fragment):
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert fragment in err[0], err


def test_writes_image_audio_and_record_and_prints_the_timings(parts, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(_vivo(parts, out, "--seed", "2", "--cfg-scale", "3", "--threads", "1"), capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["vivo.json", "vivo.png", "vivo.wav"]  # no staging left
    lines = stdout.strip().splitlines()
    assert len(lines) == 1 and TIMING_LINE.search(lines[0]) and str(out / "vivo.png") in lines[0], stdout
    want = VivoPipeline.load(parts["export"], parts["vq"]).generate(PROMPT, seed=2, image=T2ISampling(cfg_scale=3.0))
    record = json.loads((out / "vivo.json").read_text())
    assert record["type"] == "aromni_vivo" and record["prompt"] == PROMPT and record["seed"] == 2
    assert record["settings"]["image"]["cfg_scale"] == 3.0 and record["settings"]["speech"]["top_p"] == 0.8
    assert record["image_codes"] == want.image_codes.tolist() and record["speech_codes"] == want.speech_codes.tolist()
    t = record["timings"]
    assert 0 < t["ftl"] <= t["first_audio"] <= t["speech_seconds"] and t["image_seconds"] > 0
    assert t["rtf"] == pytest.approx(t["speech_seconds"] / t["audio_seconds"], rel=1e-2)
    assert sum(c["seconds"] for c in record["audio_chunks"]) == pytest.approx(record["audio_seconds"], abs=1e-3)
    with Image.open(out / "vivo.png") as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(want.image))
    audio, sr = sf.read(out / "vivo.wav", dtype="float32")
    assert sr == want.sample_rate and len(audio) == len(want.audio)
    assert np.abs(audio - np.clip(want.audio.numpy(), -1, 1)).max() <= 1 / 32767 + 1e-6  # 16-bit PCM


def test_stream_reports_chunk_arrivals_and_writes_the_same_files(parts, tmp_path, capsys):
    plain, streamed = tmp_path / "plain", tmp_path / "streamed"
    assert run(_vivo(parts, plain), capsys)[0] == 0
    code, stdout, err = run(_vivo(parts, streamed, "--stream", "--first-chunk-codes", "2", "--chunk-codes", "5"),
                            capsys)
    assert code == 0, err
    record = json.loads((streamed / "vivo.json").read_text())
    chunk_lines = [ln for ln in err if ln.startswith("audio chunk: ")]
    assert len(chunk_lines) == len(record["audio_chunks"]) >= 3
    times = [float(re.search(r"at ([0-9.]+) s$", ln).group(1)) for ln in chunk_lines]
    assert times == sorted(times) and any(ln.startswith("image done at ") for ln in err)
    image_at = float(next(ln for ln in err if ln.startswith("image done at ")).split()[3])
    assert times[0] <= image_at  # the first audio arrives before the image is done
    assert TIMING_LINE.search(stdout.strip())
    assert (plain / "vivo.png").read_bytes() == (streamed / "vivo.png").read_bytes()
    a, b = (sf.read(d / "vivo.wav", dtype="int16")[0].astype(np.int32) for d in (plain, streamed))
    assert a.shape == b.shape and np.abs(a - b).max() <= 1  # other chunk sizes: the same audio up to rounding
    assert json.loads((plain / "vivo.json").read_text())["speech_codes"] == record["speech_codes"]
    code, stdout, err = run(_vivo(parts, tmp_path / "json", "--stream", "--json"), capsys)
    payload = json.loads(stdout)
    assert code == 0 and not [ln for ln in err if ln.startswith("audio chunk")]  # --json prints JSON only
    assert payload["out"] == str(tmp_path / "json") and math.isfinite(payload["timings"]["rtf"])


def test_a_rerun_replaces_only_its_own_files(parts, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run(_vivo(parts, out, "--seed", "1"), capsys)[0] == 0
    first = (out / "vivo.png").read_bytes()
    code, _, err = run(_vivo(parts, out, "--seed", "9"), capsys)
    assert code == 0, err
    assert json.loads((out / "vivo.json").read_text())["seed"] == 9 and (out / "vivo.png").read_bytes() != first
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "vivo.json", "vivo.png", "vivo.wav"]

    theirs = tmp_path / "theirs"  # a vivo.png the command did not write
    theirs.mkdir()
    (theirs / "vivo.png").write_bytes(b"user's picture")
    code, _, err = run(_vivo(parts, theirs), capsys)
    _assert_one_line(code, err, "vivo.png exists and was not written by `aromni vivo`")
    assert (theirs / "vivo.png").read_bytes() == b"user's picture" and len(list(theirs.iterdir())) == 1
    (theirs / "vivo.png").unlink()
    (theirs / "vivo.json").write_text('{"type": "something else", "files": {"audio": "vivo.wav"}}')
    code, _, err = run(_vivo(parts, theirs), capsys)
    _assert_one_line(code, err, "vivo.json exists and was not written by `aromni vivo`")
    code, _, err = run(_vivo(parts, theirs, "--overwrite"), capsys)
    assert code == 0, err
    assert json.loads((theirs / "vivo.json").read_text())["type"] == "aromni_vivo"


@pytest.fixture(scope="module")
def bad_vq(parts) -> Path:
    path = parts["root"] / "vq64"
    LlamaGenVQ(LlamaGenVQConfig.preset("toy", image_size=64)).save_pretrained(path)  # 8 x 8 codes, not 4 x 4
    return path


@pytest.mark.parametrize("change, fragment", [
    ({"prompt": ""}, "the text is empty"),
    ({"prompt": "   "}, "the text is empty"),
    ({"--model": "missing"}, "no such OmniVIVO export directory"),
    ({"--model": "backbone"}, "not an omnivivo export"),
    ({"--vq": "missing"}, "no such VQ image tokenizer"),
    ({"--vq": "vq64"}, "makes 64 codes per image"),
    ({"--out": "a_file"}, "exists and is not a directory"),
    ({"--seed": "-1"}, "expected a seed in [0, 2^63)"),
    ({"--cfg-scale": "nan"}, "not a finite number"),
    ({"--threads": "0"}, "expected an integer >= 1"),
    ({"--chunk-codes": "0"}, "expected an integer >= 1"),
    ({"--device": "foo"}, "'foo' is not a device"),
])
def test_bad_inputs_are_one_line_errors(parts, bad_vq, tmp_path, capsys, change, fragment):
    (tmp_path / "a_file").write_text("x")
    where = {"missing": tmp_path / "missing", "backbone": parts["backbone"], "vq64": bad_vq,
             "a_file": tmp_path / "a_file"}
    args = {"prompt": PROMPT, "--model": str(parts["export"]), "--vq": str(parts["vq"]),
            "--out": str(tmp_path / "out")}
    args.update({k: str(where.get(v, v)) for k, v in change.items()})
    argv = ["vivo", args.pop("prompt")] + [x for kv in args.items() for x in kv]
    code, stdout, err = run(argv, capsys)
    _assert_one_line(code, err, fragment)
    assert stdout == "" and not (tmp_path / "out" / "vivo.json").exists()


def test_missing_required_flags_are_one_line_errors(parts, tmp_path, capsys):
    code, _, err = run(["vivo", PROMPT, "--model", str(parts["export"]), "--out", str(tmp_path)], capsys)
    _assert_one_line(code, err, "the following arguments are required: --vq")
