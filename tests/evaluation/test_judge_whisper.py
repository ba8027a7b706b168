"""WhisperTranscriber on a tiny random Whisper written by the test: shapes, determinism, batching, parity with
transformers' own generate, long clips, and one-line errors for bad directories and clips."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from aromni.errors import AromniError, CheckpointError, InputError
from aromni.evaluation.judges import WhisperTranscriber


def _clips(rate: int, seconds=(1.0, 0.4, 2.5)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(int(s * rate))).astype(np.float32) for s in seconds]


@pytest.fixture(scope="module")
def judge(tiny_whisper_dir):
    return WhisperTranscriber(tiny_whisper_dir, batch_size=2)


def test_transcribe_count_types_and_determinism(judge):
    clips = _clips(24000)
    first = judge.transcribe(clips, 24000)
    assert len(first) == 3 and all(isinstance(t, str) for t in first)
    assert judge.transcribe(clips, 24000) == first
    assert judge.transcribe([], 24000) == []


def test_batching_does_not_change_transcripts(judge, tiny_whisper_dir):
    clips = _clips(16000)
    one = WhisperTranscriber(tiny_whisper_dir, batch_size=1).transcribe(clips, 16000)
    assert judge.transcribe(clips, 16000) == one
    assert judge.transcribe(clips[::-1], 16000) == one[::-1]


def test_matches_transformers_greedy_generate(judge, tiny_whisper_dir):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    proc = WhisperProcessor.from_pretrained(tiny_whisper_dir)
    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    clip = _clips(16000)[0]
    feats = proc.feature_extractor([clip], sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(feats, language="en", task="transcribe", do_sample=False, num_beams=1)
    expected = proc.batch_decode(ids, skip_special_tokens=True)[0].strip()
    assert judge.transcribe([clip], 16000) == [expected]


def test_long_clip_is_transcribed_alone(judge):
    clips = _clips(16000, seconds=(1.0, 31.0))
    out = judge.transcribe(clips, 16000)
    assert len(out) == 2 and isinstance(out[1], str)
    assert out[0] == judge.transcribe(clips[:1], 16000)[0]


def test_describe(judge, tiny_whisper_dir):
    d = judge.describe()
    assert d["directory"] == str(tiny_whisper_dir) and d["d_model"] == 16 and d["multilingual"] is True
    assert d["parameters"] == sum(p.numel() for p in judge.model.parameters())
    assert judge.spelling() is None


def test_bad_clips_and_language(judge, tiny_whisper_dir):
    with pytest.raises(InputError, match="clip 1"):
        judge.transcribe([np.zeros(100, np.float32), np.zeros(0, np.float32)], 16000)
    with pytest.raises(InputError, match="clip 0"):
        judge.transcribe([np.zeros((2, 100), np.float32)], 16000)
    with pytest.raises(InputError, match="'de'"):
        WhisperTranscriber(tiny_whisper_dir, language="de")


def _one_line(err: AromniError) -> str:
    text = str(err)
    assert "\n" not in text
    return text


def test_missing_and_wrong_directories(tmp_path, tiny_whisper_dir, tiny_clip_dir):
    with pytest.raises(InputError) as e:
        WhisperTranscriber(tmp_path / "nope")
    assert "config.json" in _one_line(e.value)
    with pytest.raises(CheckpointError, match="'clip', not 'whisper'") as e:
        WhisperTranscriber(tiny_clip_dir)
    _one_line(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        WhisperTranscriber(empty)
    bad = tmp_path / "bad"
    shutil.copytree(tiny_whisper_dir, bad)
    (bad / "generation_config.json").unlink()
    with pytest.raises(CheckpointError, match="no generation_config.json"):
        WhisperTranscriber(bad)
    shutil.copy(tiny_whisper_dir / "generation_config.json", bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable model config"):
        WhisperTranscriber(bad)
    (bad / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    (bad / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights file"):
        WhisperTranscriber(bad)
    (bad / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError) as e:
        WhisperTranscriber(bad)
    _one_line(e.value)
