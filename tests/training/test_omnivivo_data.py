"""The OmniVIVO stage's data: manifest lines checked with errors naming file:line, speech codes equal to encoding
each file alone, the code cache reused while tokenizer and audio are unchanged and rebuilt when either changes,
right-padded batches, the length limit, and the epoch sampler (each epoch a permutation, full batches, exact state
round trip)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from aromni.errors import InputError
from aromni.tokenizers.speech.audio_io import load_audio, save_wav
from aromni.tokenizers.speech.codec import CodecConfig, StreamingCodec
from aromni.training.recipes.omnivivo_data import (
    EpochSampler,
    SpeechTextSet,
    cached_codes,
    load_speech_tokenizer,
    read_manifest,
)

SR = 16000


def _tone(path: Path, freq: float, seconds: float) -> None:
    t = np.arange(int(seconds * SR)) / SR
    save_wav(path, 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32), SR)


@pytest.fixture
def manifest(tmp_path) -> Path:
    (tmp_path / "a").mkdir()
    _tone(tmp_path / "a" / "0.wav", 300.0, 0.2)
    _tone(tmp_path / "a" / "1.wav", 600.0, 0.3)
    rows = [{"text": "a low tone", "audio": "a/0.wav"}, {"text": "a high tone", "audio": "a/1.wav", "id": 7}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    return tmp_path / "m.jsonl"


def test_manifest_lines_resolve_relative_to_the_manifest(manifest, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / "a")  # not the manifest's directory
    items = read_manifest(manifest)
    assert [it.text for it in items] == ["a low tone", "a high tone"]
    assert items[1].audio == (tmp_path / "a" / "1.wav").resolve() and items[1].where.endswith("m.jsonl:2")


@pytest.mark.parametrize("line, fragment", [
    ('{"text": "hi"}', 'm.jsonl:2: no "audio" path'),
    ('{"text": "hi", "audio": ""}', 'm.jsonl:2: no "audio" path'),
    ('{"audio": "a/0.wav"}', 'm.jsonl:2: no "text"'),
    ('{"text": "  ", "audio": "a/0.wav"}', 'm.jsonl:2: no "text"'),
    ('["hi", "a/0.wav"]', "m.jsonl:2: a JSON list, not an object"),
    ('{"text": "hi", "audio": "a/missing.wav"}', "m.jsonl:2: audio file"),
    ('{"text": "hi", "audio": 3}', 'm.jsonl:2: no "audio" path'),
    ('{"text": "hi", "audio": "a/0.wav"', "m.jsonl:2: not valid JSON"),
])
def test_bad_manifest_lines_name_file_and_line(manifest, line, fragment):
    good = manifest.read_text().splitlines()[0]
    manifest.write_text(good + "\n" + line + "\n")
    with pytest.raises(InputError) as e:
        read_manifest(manifest)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_empty_or_missing_manifest(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(InputError, match="holds no lines"):
        read_manifest(tmp_path / "e.jsonl")
    with pytest.raises(InputError, match="no such manifest"):
        read_manifest(tmp_path / "nope.jsonl")


def test_codes_are_cached_and_rebuilt_when_an_input_changes(manifest, tmp_path, monkeypatch):
    torch.manual_seed(0)
    StreamingCodec(CodecConfig.preset("tiny")).save_pretrained(tmp_path / "codec")
    tok = load_speech_tokenizer(tmp_path / "codec", torch.device("cpu"))
    items = read_manifest(manifest)
    cache = tmp_path / "out" / "codes.safetensors"
    codes = cached_codes(items, tok, tmp_path / "codec", cache, progress=False)
    for it, c in zip(items, codes):  # each file encoded alone, at the tokenizer's rate
        assert torch.equal(c, tok.encode(load_audio(it.audio, SR)[None])[0])
    assert [len(c) for c in codes] == [8, 12]  # ceil(T / 400)
    calls = []
    real = StreamingCodec.encode
    monkeypatch.setattr(StreamingCodec, "encode", lambda self, wav: calls.append(1) or real(self, wav))
    again = cached_codes(items, tok, tmp_path / "codec", cache, progress=False)
    assert calls == [] and all(torch.equal(a, b) for a, b in zip(codes, again))
    _tone(items[0].audio, 300.0, 0.45)  # the audio changed: encoded again
    os.utime(items[0].audio, ns=(1, 1))
    assert [len(c) for c in cached_codes(items, tok, tmp_path / "codec", cache, progress=False)] == [18, 12]
    assert len(calls) == 2
    cfg = json.loads((tmp_path / "codec" / "config.json").read_text())
    (tmp_path / "codec" / "config.json").write_text(json.dumps(cfg, indent=1))  # the tokenizer's files changed
    cached_codes(items, tok, tmp_path / "codec", cache, progress=False)
    assert len(calls) == 4
    cache.write_bytes(b"damaged")  # a damaged cache is rebuilt, not trusted
    assert len(cached_codes(items, tok, tmp_path / "codec", cache, progress=False)) == 2 and len(calls) == 6


def test_batches_are_right_padded_and_long_utterances_refused(manifest):
    items = read_manifest(manifest)
    data = SpeechTextSet(items, [torch.arange(3), torch.arange(5) + 10], max_len=5)
    texts, codes, lengths = data.batch([1, 0, 1])
    assert texts == ["a high tone", "a low tone", "a high tone"] and lengths.tolist() == [5, 3, 5]
    assert codes.tolist() == [[10, 11, 12, 13, 14], [0, 1, 2, 0, 0], [10, 11, 12, 13, 14]]
    with pytest.raises(InputError, match=r"m.jsonl:2: 1.wav encodes to 5 speech codes, more than .*_len 4"):
        SpeechTextSet(items, [torch.arange(3), torch.arange(5)], max_len=4)


def test_the_sampler_walks_seeded_permutations_and_resumes_exactly():
    s = EpochSampler(5, 3, seed=1)
    batches = [s.next_batch() for _ in range(10)]  # 30 indices = 6 epochs of 5
    flat = [i for b in batches for i in b]
    assert all(len(b) == 3 for b in batches)
    epochs = [flat[i:i + 5] for i in range(0, 30, 5)]
    assert all(sorted(e) == list(range(5)) for e in epochs) and len({tuple(e) for e in epochs}) > 1
    r = EpochSampler(5, 3, seed=1)
    first = [r.next_batch() for _ in range(4)]
    state = r.state_dict()
    resumed = EpochSampler(5, 3, seed=1)
    resumed.load_state_dict(state)
    assert first + [resumed.next_batch() for _ in range(6)] == batches
    assert any(EpochSampler(5, 3, seed=s).next_batch() != batches[0] for s in (2, 3))  # the seed matters
