"""Sharding, resume and per-sample failures of the public suites (toy bundle, fixture datasets): two in-process
shards give the records and metrics of one process, rank 0 never merges without every shard, an interrupted run
resumes without redoing finished samples, a resumed run with other settings is refused, and samples the model
cannot take are recorded (not cut, not fatal)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import sample_records

import aromni
from aromni.evaluation.context import SuiteSettings
from aromni.evaluation.records import RecordStore
from aromni.evaluation.runner import SuiteRun, run_suite
from aromni.evaluation.scoring import Judges, JudgeSpec
from aromni.evaluation.sharding import Shard
from aromni.evaluation.suites import SUITES


@pytest.fixture(scope="module")
def toy():
    torch.set_num_threads(1)
    return aromni.load("toy")


# ------------------------------------------------------------------------------------------------ shards, resume
def _api_run(suite: str, public_data: dict, out: Path, **settings) -> SuiteRun:
    s = SUITES[suite]
    return SuiteRun(s, public_data[s.dataset], out, "toy", {"path": "toy"}, SuiteSettings(**settings), progress=False,
                    merge_timeout_s=5)


def _strip(recs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "timing"} for r in recs]


@pytest.mark.parametrize("suite", ["coco-caption", "librispeech"])
def test_two_shards_equal_one_process(toy, public_data, tmp_path, suite):
    judges = Judges(JudgeSpec())
    single = run_suite(_api_run(suite, public_data, tmp_path / "one", batch_size=2), toy, judges)
    assert run_suite(_api_run(suite, public_data, tmp_path / "two", batch_size=2), toy, judges, Shard(1, 2)) is None
    merged = run_suite(_api_run(suite, public_data, tmp_path / "two", batch_size=2), toy, judges, Shard(0, 2))
    assert _strip(sample_records(tmp_path / "two")) == _strip(sample_records(tmp_path / "one"))
    assert merged["metrics"] == single["metrics"]
    assert sorted(p.name for p in (tmp_path / "two" / "shards").iterdir()) == ["rank-0-of-2.done",
                                                                              "rank-1-of-2.done"]


def test_two_shards_equal_one_process_vivo(public_data, tmp_path, tiny_whisper_dir, tiny_inception_weights):
    """OmniVIVO samples its image and speech: each sample's own seed makes the shards' records equal one
    process's (transcripts, edit counts; Inception probabilities and Score up to float rounding)."""
    from aromni.omnivivo.api import VivoPipeline
    from aromni.toyworld.demo import find_vivo

    pipe = VivoPipeline.load(*find_vivo())
    judges = Judges(JudgeSpec(transcriber=str(tiny_whisper_dir), inception=str(tiny_inception_weights)))
    kw = {"batch_size": 2, "dnsmos": False, "seed": 3}
    single = run_suite(_api_run("vivo", public_data, tmp_path / "one", **kw), pipe, judges)
    assert run_suite(_api_run("vivo", public_data, tmp_path / "two", **kw), pipe, judges, Shard(1, 2)) is None
    merged = run_suite(_api_run("vivo", public_data, tmp_path / "two", **kw), pipe, judges, Shard(0, 2))
    two, one = sample_records(tmp_path / "two"), sample_records(tmp_path / "one")
    # the images are the same; the Inception network's float rounding depends on its batch (1e-7)
    probs = [(np.asarray(a.pop("inception_probs")), np.asarray(b.pop("inception_probs"))) for a, b in zip(two, one)]
    assert all(np.allclose(a, b, rtol=0, atol=1e-5) for a, b in probs)
    assert _strip(two) == _strip(one)
    skip = ("timing", "inception_score")
    m2, m1 = ({k: v for k, v in m["metrics"].items() if k not in skip} for m in (merged, single))
    assert m2 == m1
    assert merged["metrics"]["inception_score"]["mean"] == pytest.approx(single["metrics"]["inception_score"]["mean"])


def test_rank0_refuses_to_merge_without_the_other_shard(toy, public_data, tmp_path):
    from aromni.errors import AromniError

    run = _api_run("librispeech", public_data, tmp_path / "run")
    run.merge_timeout_s = 0.1
    with pytest.raises(AromniError, match="no completion marker from rank-1-of-2.done"):
        run_suite(run, toy, Judges(JudgeSpec()), Shard(0, 2))


def test_resume_skips_finished_samples(toy, public_data, tmp_path, monkeypatch):
    """A run killed after its first batch resumes with only the samples it had not finished."""
    calls: list[int] = []
    real = type(toy).asr

    def counting(self, audio, **kw):
        calls.append(len(audio) if isinstance(audio, list) else 1)
        if len(calls) == 2 and interrupt:
            raise KeyboardInterrupt
        return real(self, audio, **kw)

    monkeypatch.setattr(type(toy), "asr", counting)
    interrupt = True
    run = _api_run("librispeech", public_data, tmp_path / "run", batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        run_suite(run, toy, Judges(JudgeSpec()))
    assert calls == [2, 1] and len(list((tmp_path / "run" / "samples").glob("*.json"))) == 2
    interrupt, calls[:] = False, []
    resumed = run_suite(run, toy, Judges(JudgeSpec()))
    assert calls == [1]  # only the third sample
    fresh = run_suite(_api_run("librispeech", public_data, tmp_path / "fresh", batch_size=2), toy, Judges(JudgeSpec()))
    assert resumed["metrics"] == fresh["metrics"]
    calls[:] = []
    run_suite(run, toy, Judges(JudgeSpec()))  # everything done: merge only
    assert calls == []


def test_resume_with_other_settings_is_refused(toy, public_data, tmp_path):
    from aromni.errors import InputError

    run_suite(_api_run("librispeech", public_data, tmp_path / "run", limit=2), toy, Judges(JudgeSpec()))
    with pytest.raises(InputError, match="holds records of another set-up .*samples"):
        run_suite(_api_run("librispeech", public_data, tmp_path / "run", limit=3), toy, Judges(JudgeSpec()))
    store = RecordStore(tmp_path / "run")  # the first run's records are kept
    assert len(store.read_all([r["id"] for r in sample_records(tmp_path / "run")])) == 2


def test_asr_clip_longer_than_the_context_is_recorded_not_cut(toy, tmp_path):
    """A 20 s clip does not fit the toy bundle's 512-token context: its record has an empty transcript and the
    reason (all its words count as errors); the short clip in the same batch is transcribed as usual."""
    from test_public_layouts import _tone, _write_audio

    d = tmp_path / "ls" / "test-clean" / "1" / "2"
    _write_audio(d / "1-2-0000.flac", _tone(0.5, 200))
    _write_audio(d / "1-2-0001.flac", _tone(20.0, 200))
    (d / "1-2.trans.txt").write_text("1-2-0000 A SHORT ONE\n1-2-0001 A VERY LONG ONE INDEED\n")
    res = run_suite(_api_run("librispeech", {"librispeech": tmp_path / "ls"}, tmp_path / "run", batch_size=2), toy,
                    Judges(JudgeSpec()))
    short, long = sample_records(tmp_path / "run")
    assert short["error"] is None and long["hyp"] == "" and "context fits about" in long["error"]
    assert long["errors"] == long["ref_words"] == 5
    assert res["metrics"]["too_long"] == 1
    assert res["metrics"]["wer"] == pytest.approx((short["errors"] + 5) / 8)


def test_tts_text_the_model_refuses_counts_as_unspoken(toy, tmp_path, tiny_whisper_dir):
    """A LibriTTS text far longer than the toy context is refused by the model: the run goes on, the record keeps
    the reason, and all of its words count as errors."""
    from test_public_layouts import _tone, _write_audio

    d = tmp_path / "ltts" / "test-clean" / "1" / "2"
    long_text = " ".join(["word"] * 4000)
    for utt, text in (("1_2_000001_000000", "A short one."), ("1_2_000002_000000", long_text)):
        _write_audio(d / f"{utt}.wav", _tone(0.3, 200), 24000)
        (d / f"{utt}.normalized.txt").write_text(text)
    run = _api_run("libritts-tts", {"libritts": tmp_path / "ltts"}, tmp_path / "run", force_speech=True,
                   dnsmos=False, ground_truth=False)
    res = run_suite(run, toy, Judges(JudgeSpec(transcriber=str(tiny_whisper_dir))))
    short, long = sample_records(tmp_path / "run")
    assert "context" in long["timing"]["error"] and long["no_speech"] and long["hyp"] == ""
    assert long["errors"] == long["ref_words"] == 4000 and "error" not in short["timing"]
    assert res["metrics"]["refused"] == 1 and res["metrics"]["no_speech"] == 1


def test_instruction_override_reaches_the_prompt_and_the_settings(toy, public_data, tmp_path, monkeypatch):
    seen = []
    real = type(toy).caption

    def spy(self, images, **kw):
        seen.append(kw.get("instruction"))
        return real(self, images, **kw)

    monkeypatch.setattr(type(toy), "caption", spy)
    res = run_suite(_api_run("coco-caption", public_data, tmp_path / "run", instruction="Describe the image briefly."),
                    toy, Judges(JudgeSpec()))
    assert seen == ["Describe the image briefly."]
    assert res["settings"]["instruction"] == "Describe the image briefly."
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_json["settings"]["instruction"] == "Describe the image briefly."
