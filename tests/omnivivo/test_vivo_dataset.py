"""``aromni omnivivo generate`` (aromni.omnivivo.dataset_builder) on the tiny untrained export: it writes each
prompt's image and audio and a Parquet table with typed columns; the WER filter flags exactly the rows above the
threshold (a fake recognizer returns chosen transcripts); a rerun skips finished ids (generation patched to fail
for them) and re-flags under new thresholds without generating; bad prompt files name file:line; a foreign or
mismatched output directory is refused before any compute."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from PIL import Image

from aromni.cli.main import main
from aromni.errors import InputError
from aromni.omnivivo.api import VivoPipeline
from aromni.omnivivo.dataset_builder import DatasetSettings, build_dataset, read_prompts
from aromni.omnivivo.recognizers import Recognizer, ToyJudgeRecognizer
from aromni.omnivivo.t2i_generate import T2ISampling

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_vivo_api import build_tiny_export

PROMPTS = ["a red circle at the top left", "a small blue square", "a green star in the middle"]
HEARD = {PROMPTS[0]: "A red circle at the top left.",  # exact after normalisation: WER 0
         PROMPTS[1]: "a small blue squares",            # 1 of 4 words: WER 0.25
         PROMPTS[2]: "a green star in the middle"}      # WER 0


class FakeRecognizer:
    """Returns the chosen transcript of the prompt whose audio it is given (audio -> prompt via the order of the
    batch, recorded by the pipeline wrapper)."""

    name = "fake"

    def __init__(self, pipe: Pipe):
        self.pipe = pipe

    def transcribe(self, wavs: list[np.ndarray], sample_rate: int) -> list[str]:
        assert sample_rate == self.pipe.sample_rate and all(w.dtype == np.float32 and w.ndim == 1 for w in wavs)
        return [HEARD[t] for t in self.pipe.last]


class Pipe:
    """The real pipeline, recording each batch's prompts and failing on the texts in ``fail``."""

    def __init__(self, real: VivoPipeline, fail=()):
        self.real, self.fail, self.last, self.calls = real, set(fail), [], []

    @property
    def sample_rate(self) -> int:
        return self.real.sample_rate

    def generate(self, prompts, **kw):
        self.calls.append(list(prompts))
        if self.fail & set(prompts):
            raise RuntimeError(f"generation failed for {sorted(self.fail & set(prompts))}")
        self.last = list(prompts)
        return self.real.generate(prompts, **kw)


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    return build_tiny_export(tmp_path_factory.mktemp("vivo_dataset"))


@pytest.fixture(scope="module")
def real(parts) -> VivoPipeline:
    return VivoPipeline.load(parts["export"], parts["vq"])


def _settings(parts, tmp_path, **kw) -> DatasetSettings:
    prompts = tmp_path / "prompts.txt"
    if not prompts.exists():
        prompts.write_text("\n".join(PROMPTS) + "\n")
    base = {"model": parts["export"], "vq": parts["vq"], "prompts": prompts, "out": tmp_path / "out",
            "min_seconds": 0.0, "max_seconds": 1000.0, "batch_size": 2, "image": T2ISampling(cfg_scale=3.0, top_k=50)}
    return DatasetSettings(**{**base, **kw})


def test_writes_files_and_a_typed_table_and_flags_wer_above_the_threshold(parts, real, tmp_path):
    pipe = Pipe(real)
    manifest = build_dataset(_settings(parts, tmp_path, seed=3), recognizer=FakeRecognizer(pipe), pipeline=pipe)
    out = tmp_path / "out"
    table = pq.read_table(out / "dataset.parquet")
    types = {f.name: f.type for f in table.schema}
    assert types == {"id": pa.string(), "text": pa.string(), "image_path": pa.string(), "audio_path": pa.string(),
                     "duration": pa.float64(), "sample_rate": pa.int32(), "transcript": pa.string(),
                     "wer": pa.float64(),
                     "flags": pa.struct([("keep", pa.bool_()), ("reasons", pa.list_(pa.string()))]),
                     "seed": pa.int64(), "stop_reason": pa.string()}
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == ["000000", "000001", "000002"] and [r["text"] for r in rows] == PROMPTS
    assert [r["seed"] for r in rows] == [3, 4, 5]
    assert [r["wer"] for r in rows] == [0.0, 0.25, 0.0]
    assert [r["flags"] for r in rows] == [{"keep": True, "reasons": []},
                                          {"keep": False, "reasons": ["wer_above_threshold"]},
                                          {"keep": True, "reasons": []}]
    want = real.generate(PROMPTS, seed=3, image=T2ISampling(cfg_scale=3.0, top_k=50))
    for r, w in zip(rows, want):
        assert r["transcript"] == HEARD[r["text"]] and r["stop_reason"] == w.stop_reason
        with Image.open(out / r["image_path"]) as im:  # batching and seeds: the same samples as one direct call
            assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(w.image))
        audio, sr = sf.read(out / r["audio_path"], dtype="float32")
        assert sr == r["sample_rate"] == w.sample_rate and len(audio) == len(w.audio) > 0
        assert r["duration"] == pytest.approx(w.seconds)
    assert manifest["status"] == "complete" and manifest["identity"]["recognizer"] == "fake"
    assert manifest["counts"]["kept"] == 2 and manifest["counts"]["flagged"]["wer_above_threshold"] == 1
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left

    # A rerun with another threshold re-flags from the stored measurements, generating nothing.
    again = Pipe(real, fail=PROMPTS)
    build_dataset(_settings(parts, tmp_path, seed=3, max_wer=0.3), recognizer=FakeRecognizer(again), pipeline=again)
    assert again.calls == [] and all(f["keep"] for f in pq.read_table(out / "dataset.parquet")["flags"].to_pylist())


def test_duration_flags_and_no_recognizer(parts, real, tmp_path):
    build_dataset(_settings(parts, tmp_path, min_seconds=999.0, max_seconds=1000.0, limit=2), recognizer=None,
                  pipeline=real)
    rows = pq.read_table(tmp_path / "out" / "dataset.parquet").to_pylist()
    assert len(rows) == 2 and all(r["transcript"] is None and r["wer"] is None for r in rows)
    assert all(r["flags"] == {"keep": False, "reasons": ["too_short"]} for r in rows)


def test_resume_skips_finished_ids(parts, real, tmp_path):
    settings = _settings(parts, tmp_path, batch_size=1)
    failing = Pipe(real, fail=[PROMPTS[1]])
    with pytest.raises(RuntimeError, match="generation failed"):
        build_dataset(settings, recognizer=FakeRecognizer(failing), pipeline=failing)
    out = tmp_path / "out"
    assert [json.loads(ln)["id"] for ln in (out / "rows.jsonl").read_text().splitlines()] == ["000000"]
    assert not (out / "dataset.parquet").exists()
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"
    first = (out / "images" / "000000.png").read_bytes(), (out / "audio" / "000000.wav").read_bytes()
    with open(out / "rows.jsonl", "a") as f:
        f.write('{"id": "000001", "ind')  # a torn append: dropped, its sample redone

    resumed = Pipe(real, fail=[PROMPTS[0]])  # generating a finished id would fail
    manifest = build_dataset(settings, recognizer=FakeRecognizer(resumed), pipeline=resumed)
    assert resumed.calls == [[PROMPTS[1]], [PROMPTS[2]]]
    assert manifest["counts"]["generated"] == 2 and manifest["counts"]["resumed"] == 1
    assert [r["id"] for r in pq.read_table(out / "dataset.parquet").to_pylist()] == ["000000", "000001", "000002"]
    assert ((out / "images" / "000000.png").read_bytes(), (out / "audio" / "000000.wav").read_bytes()) == first
    assert len((out / "rows.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("name, text, line, fragment", [
    ("p.txt", "a red circle\n\na blue square\n", 2, "empty line"),
    ("p.txt", "   \n", None, "no prompts"),
    ("p.jsonl", '{"text": "a red circle"}\n{"text": \n', 2, "not valid JSON"),
    ("p.jsonl", '{"text": "a red circle"}\n["a list"]\n', 2, "expected a JSON object"),
    ("p.jsonl", '{"txt": "a red circle"}\n', 1, 'has no "text"'),
    ("p.jsonl", '{"text": "  "}\n', 1, '"text" is not a non-empty string'),
    ("p.jsonl", '{"text": "a", "id": "x"}\n{"text": "b", "id": "x"}\n', 2, "is also the id of line 1"),
    ("p.jsonl", '{"text": "a", "id": "../x"}\n', 1, "bad id"),
])
def test_bad_prompt_files_name_file_and_line(tmp_path, name, text, line, fragment):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as e:
        read_prompts(path)
    assert fragment in str(e.value) and str(path if line is None else f"{path}:{line}") in str(e.value)


def test_jsonl_prompts_with_ids(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": " a red circle ", "id": "r1"}\n{"text": "a blue square", "source": "x"}\n')
    got = read_prompts(path)
    assert [(p.id, p.text, p.index, p.line) for p in got] == [("r1", "a red circle", 0, 1),
                                                              ("000001", "a blue square", 1, 2)]


def test_output_dir_refusals(parts, tmp_path):
    class Boom:
        def generate(self, *a, **k):
            raise AssertionError("no compute before the checks")

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="is not empty and is not a dataset written by"):
        build_dataset(_settings(parts, tmp_path), recognizer=None, pipeline=Boom())
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="exists and is not a directory"):
        build_dataset(_settings(parts, tmp_path, out=tmp_path / "file"), recognizer=None, pipeline=Boom())
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"type": "aromni_vivo_dataset", "identity": {"seed": 7}}))
    with pytest.raises(InputError, match="generated with model None"):
        build_dataset(_settings(parts, tmp_path, out=other), recognizer=None, pipeline=Boom())


def test_recognizers_and_the_cli_handler(parts, tmp_path, capsys):
    judge = ToyJudgeRecognizer.load()
    assert isinstance(judge, Recognizer) and isinstance(FakeRecognizer(None), Recognizer)
    heard = judge.transcribe([np.zeros(12000, np.float32), np.zeros(3000, np.float32)], 24000)
    assert len(heard) == 2 and all(isinstance(t, str) for t in heard)
    (tmp_path / "p.txt").write_text(PROMPTS[0] + "\n")
    assert main(["omnivivo", "generate", "--model", str(parts["export"]), "--vq", str(parts["vq"]), "--prompts",
                 str(tmp_path / "p.txt"), "--out", str(tmp_path / "o"), "--recognizer", "toy-judge",
                 "--cfg-scale", "3", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["counts"]["rows"] == 1 and payload["identity"]["recognizer"] == "toy-judge"
    row = pq.read_table(tmp_path / "o" / "dataset.parquet").to_pylist()[0]
    assert isinstance(row["transcript"], str) and isinstance(row["wer"], float)
