"""``aromni data build``: raw files -> shards, checked against independently encoded conversations.

The tokenizers are tiny random instances of the real classes (BPE trained here, VQGAN and WavTokenizer
``tiny`` presets); the raw data (tones, drawn PNGs, text, dialogs) is written by the fixtures, bad records
included on purpose.
"""

from __future__ import annotations

import json
import os
import signal
import wave
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
import yaml

from aromni.errors import AromniError, ConfigError, InputError
from aromni.tokenizers.image.config import VQGANConfig
from aromni.tokenizers.image.image_io import load_image
from aromni.tokenizers.image.vqgan import VQGAN
from aromni.tokenizers.speech.audio_io import load_audio
from aromni.tokenizers.speech.wavtokenizer.config import WavTokenizerConfig
from aromni.tokenizers.speech.wavtokenizer.model import WavTokenizer
from aromni.tokenizers.text import TextTokenizer
from aromni.training.data.build import STAGE, BuildConfig, build, format_report
from aromni.training.data.shards import ShardDataset, read_manifest
from aromni.vocab.conversation import (
    OFFICIAL,
    Conversation,
    ImageSegment,
    SpeechSegment,
    TextSegment,
    Turn,
    decode_conversation,
    encode_conversation,
)
from aromni.vocab.layout import VocabLayout
from aromni.vocab.templates import task_conversation

CAPTIONS = ["a red circle on white", "a blue square in the middle", "a green star at the top"]
TRANSCRIPTS = ["a red circle", "the blue square", "green star"]
CORPUS = (
    CAPTIONS
    + TRANSCRIPTS
    + [
        "USER: GPT: ASSISTANT:",
        "Describe this image.",
        "Convert this text into speech.",
        "This is input: ",
        "Can you please convert this speech into written text?",
        "Reply in text.",
        "the sky is blue today",
        "Create a picture that matches the essence of this text.",
    ]
)


# ---------------------------------------------------------------- tokenizers
@pytest.fixture(scope="module")
def toks(tmp_path_factory):
    root = tmp_path_factory.mktemp("toks")
    torch.manual_seed(0)
    probe = VocabLayout.compact(0, 32, 64)
    text = TextTokenizer.train(CORPUS * 8, 400, probe.special_token_strings(), min_frequency=1)
    image = VQGAN(VQGANConfig.preset("tiny")).eval()
    speech = WavTokenizer(WavTokenizerConfig.preset("tiny")).eval()
    layout = VocabLayout.compact(text.vocab_size - len(probe.special_token_strings()), 32, 64)
    text.save_pretrained(root / "text")
    image.save_pretrained(root / "image")
    speech.save_pretrained(root / "speech")
    (root / "layout.json").write_text(json.dumps(layout.to_dict()))
    return {"root": root, "text": text, "image": image, "speech": speech, "layout": layout}


# ---------------------------------------------------------------- raw data
def _tone(path: Path, freq: float, seconds: float, rate: int = 16000) -> None:
    t = np.arange(int(rate * seconds)) / rate
    sf.write(path, (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)


def _png(path: Path, color: str, shape: str) -> None:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (24, 24), "white")
    d = ImageDraw.Draw(im)
    (d.ellipse if shape == "circle" else d.rectangle)([5, 5, 19, 19], fill=color)
    im.save(path)


def _jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    r = tmp_path_factory.mktemp("raw")
    (r / "speech").mkdir()
    for i, f in enumerate((220, 440, 660)):
        _tone(r / "speech" / f"s{i}.wav", f, 0.03 + 0.01 * i)
    _tone(r / "speech" / "long.wav", 300, 1.5)
    with wave.open(str(r / "speech" / "empty.wav"), "wb") as w:  # a valid header with no frames
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    (r / "speech" / "garbage.wav").write_bytes(b"RIFF-not-really-audio" * 4)
    (r / "speech.tsv").write_text(
        "path\ttext\n"
        + "".join(f"speech/s{i}.wav\t{t}\n" for i, t in enumerate(TRANSCRIPTS))
        + "speech/missing.wav\thello\nspeech/s0.wav\t   \nspeech/empty.wav\tsilence\n"
        "speech/garbage.wav\tnoise\nspeech/long.wav\ttoo long\n"
    )
    (r / "pairs").mkdir()
    _tone(r / "pairs" / "a.wav", 500, 0.04)
    (r / "pairs" / "a.txt").write_text("the sky is blue today\n")
    _tone(r / "pairs" / "b.wav", 520, 0.04)  # no b.txt
    (r / "images").mkdir()
    for i, (c, s) in enumerate((("red", "circle"), ("blue", "square"), ("green", "circle"))):
        _png(r / "images" / f"i{i}.png", c, s)
    (r / "images" / "broken.png").write_bytes(b"\x89PNG not an image")
    _jsonl(
        r / "images.jsonl",
        [{"image": f"images/i{i}.png", "caption": c} for i, c in enumerate(CAPTIONS)]
        + [{"image": "images/broken.png", "caption": "x"}, {"image": "images/nope.png", "caption": "y"}],
    )
    (r / "text.txt").write_text("the sky is blue today\n\n" + "a red circle " * 200 + "\nUSER: hello\n")
    _jsonl(r / "docs.jsonl", [{"text": "a blue square"}, {"body": "no text field"}])
    world = r / "world"
    (world / "media").mkdir(parents=True)
    _png(world / "media" / "d0.png", "red", "square")
    _tone(world / "media" / "d0.wav", 330, 0.03)
    chat = {
        "id": "d-chat",
        "task": "chat",
        "split": "train",
        "turns": [
            {
                "role": "user",
                "segments": [
                    {"type": "speech", "path": "media/d0.wav", "transcript": "hi"},
                    {"type": "text", "text": "Reply in text."},
                ],
            },
            {"role": "assistant", "segments": [{"type": "text", "text": "the sky is blue today"}]},
            {
                "role": "user",
                "segments": [
                    {"type": "image", "path": "media/d0.png"},
                    {"type": "text", "text": "Describe this image."},
                ],
            },
            {
                "role": "assistant",
                "segments": [
                    {"type": "text", "text": "a red square"},
                    {"type": "image", "path": "media/d0.png"},
                ],
            },
        ],
    }
    doc = {
        "id": "d-doc",
        "task": "text",
        "split": "validation",
        "turns": [{"role": "assistant", "segments": [{"type": "text", "text": "a green star"}]}],
    }
    bad_order = {
        "id": "d-bad",
        "task": "x",
        "split": "train",
        "turns": [
            {"role": "assistant", "segments": [{"type": "text", "text": "a"}]},
            {"role": "user", "segments": [{"type": "text", "text": "b"}]},
        ],
    }
    no_img = {
        "id": "d-noimg",
        "task": "caption",
        "split": "train",
        "turns": [
            {"role": "user", "segments": [{"type": "image", "path": "media/absent.png"}]},
            {"role": "assistant", "segments": [{"type": "text", "text": "x"}]},
        ],
    }
    _jsonl(world / "records" / "train.jsonl", [chat, doc, "{not json", bad_order, no_img])
    return r


def _config(toks, raw, **over) -> BuildConfig:
    t = toks["root"]
    d = {
        "tokenizers": {"text": str(t / "text"), "image": str(t / "image"), "speech": str(t / "speech")},
        "layout": str(t / "layout.json"),
        "max_len": 400,
        "chunk_size": 2,
        "max_audio_seconds": 1.0,
        "rows_per_shard": 5,
        "sources": [
            {"type": "speech_text", "paths": ["speech.tsv", "pairs"], "tasks": ["asr", "tts"]},
            {"type": "image_text", "paths": "images.jsonl", "split": "train"},
            {"type": "text", "paths": ["text.txt", "docs.jsonl"]},
            {"type": "dialogs", "paths": "world/records/*.jsonl"},
        ],
    }
    d.update(over)
    return BuildConfig.from_dict(d, config_dir=raw)


@pytest.fixture(scope="module")
def reference(toks, raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "shards"
    manifest = build(_config(toks, raw), out=out, workers=1, progress=False)
    return out, manifest


# ---------------------------------------------------------------- helpers
def _tables(root: Path) -> dict[str, tuple[list[str], pa.Table]]:
    out = {}
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(split_dir.glob("shard-*.parquet"))
        out[split_dir.name] = ([f.name for f in files], pa.concat_tables([pq.read_table(f) for f in files]))
    return out


def _assert_same_build(a: Path, b: Path) -> None:
    ta, tb = _tables(a), _tables(b)
    assert ta.keys() == tb.keys()
    for split in ta:
        assert ta[split][0] == tb[split][0], split
        assert ta[split][1].equals(tb[split][1]), split
    ma, mb = read_manifest(a), read_manifest(b)
    assert ma["splits"] == mb["splits"] and ma["report"] == mb["report"]
    assert ma["tokenizers"] == mb["tokenizers"]


def _speech_codes(toks, path) -> np.ndarray:
    wav = load_audio(path, toks["speech"].sample_rate)
    with torch.no_grad():
        return toks["speech"].encode(wav[None])[0].numpy()


def _image_codes(toks, path) -> np.ndarray:
    with torch.no_grad():
        return toks["image"].encode([load_image(path)])[0].numpy()


def _by_source(ds: ShardDataset) -> dict[str, object]:
    return {s.source: s for s in ds}


# ---------------------------------------------------------------- tests
def test_build_matches_independent_encoding(toks, raw, reference):
    out, manifest = reference
    layout, text = toks["layout"], toks["text"]
    train = _by_source(ShardDataset(out, "train", vocab_size=layout.vocab_size))
    assert len(train) == manifest["splits"]["train"]["rows"]

    # speech_text: ASR and TTS samples equal the template conversations with independently computed codes.
    for i, transcript in enumerate(TRANSCRIPTS):
        codes = _speech_codes(toks, raw / "speech" / f"s{i}.wav")
        where = f"{raw / 'speech.tsv'}:{i + 2}"
        for task, kw in (
            ("asr", {"speech": codes, "response_text": transcript}),
            ("tts", {"text": transcript, "response_speech": codes}),
        ):
            s = train[f"{where}#{task}"]
            enc = encode_conversation(task_conversation(task, **kw), layout, text, OFFICIAL)
            assert np.array_equal(s.ids, enc.ids) and np.array_equal(s.response, enc.is_response)
            assert s.spans == enc.spans and (s.task, s.group) == (task, "speech")
            conv = decode_conversation(s.ids, layout, text, OFFICIAL)
            reply = conv.turns[1].segments
            if task == "asr":
                assert text.decode(s.ids[s.response][:-1].tolist()) == transcript
                assert isinstance(reply[0], TextSegment) and reply[0].text == transcript
            else:
                assert isinstance(reply[0], SpeechSegment) and np.array_equal(reply[0].codes, codes)
            assert s.ids[s.response][-1] == layout.eos

    # image_text: captions and T2I.
    for i, caption in enumerate(CAPTIONS):
        codes = _image_codes(toks, raw / "images" / f"i{i}.png")
        for task, kw in (
            ("caption", {"image": codes, "response_text": caption}),
            ("t2i", {"text": caption, "response_image": codes}),
        ):
            s = train[f"{raw / 'images.jsonl'}:{i + 1}#{task}"]
            enc = encode_conversation(task_conversation(task, **kw), layout, text, OFFICIAL)
            assert np.array_equal(s.ids, enc.ids) and np.array_equal(s.response, enc.is_response)
            assert s.group == "image"

    # text: <bos> text <eos>, everything after <bos> is response.
    s = train[f"{raw / 'text.txt'}:1"]
    assert s.ids[0] == layout.bos and s.ids[-1] == layout.eos and (s.task, s.group) == ("text", "text")
    assert text.decode(s.ids[1:-1].tolist()) == "the sky is blue today"
    assert not s.response[0] and s.response[1:].all()

    # dialogs: decodes back to the original multi-turn structure; masks cover exactly the assistant turns.
    s = train[f"{raw / 'world' / 'records' / 'train.jsonl'}:1 id=d-chat"]
    img = _image_codes(toks, raw / "world" / "media" / "d0.png")
    wav = _speech_codes(toks, raw / "world" / "media" / "d0.wav")
    expected = Conversation(
        [
            Turn("user", [SpeechSegment(wav), TextSegment("Reply in text.")]),
            Turn("assistant", [TextSegment("the sky is blue today")]),
            Turn("user", [ImageSegment(img), TextSegment("Describe this image.")]),
            Turn("assistant", [TextSegment("a red square"), ImageSegment(img)]),
        ]
    )
    enc = encode_conversation(expected, layout, text, OFFICIAL)
    assert np.array_equal(s.ids, enc.ids) and np.array_equal(s.response, enc.is_response)
    got = decode_conversation(s.ids, layout, text, OFFICIAL)
    assert [t.role for t in got.turns] == ["user", "assistant", "user", "assistant"]
    for g, e in zip(got.turns, expected.turns):
        assert [x.type for x in g.segments] == [x.type for x in e.segments]
        for gx, ex in zip(g.segments, e.segments):
            assert gx.text == ex.text if isinstance(ex, TextSegment) else gx == ex
    assert s.ids[-1] == layout.eom and (s.task, s.group) == ("chat", "image")
    # the mask is True exactly on the assistant turns' content, markers and terminators
    resp_turns = set(enc.turn[enc.is_response].tolist())
    assert resp_turns == {1, 3}

    val = ShardDataset(out, "validation")
    assert (
        len(val) == 1 and val[0].task == "text" and text.decode(val[0].ids[1:-1].tolist()) == "a green star"
    )


def test_bad_records_are_counted_per_reason(reference, raw):
    out, manifest = reference
    rep = manifest["report"]
    assert rep["skipped"] == {
        "audio_too_long": 1,
        "bad_audio": 1,
        "bad_image": 1,
        "bad_json": 1,
        "bad_record": 2,
        "empty_audio": 1,
        "empty_text": 1,
        "missing_file": 4,
        "too_long": 1,
    }
    assert any("missing.wav" in e for e in rep["examples"]["missing_file"])
    assert any("b.txt" in e for e in rep["examples"]["missing_file"])
    assert any("absent.png" in e for e in rep["examples"]["missing_file"])
    assert any("text.txt:3" in e for e in rep["examples"]["too_long"])
    # every record is accounted for: read = kept records + skipped records
    per = {s["type"]: s for s in rep["sources"]}
    assert per["speech_text"]["records"] == 10 and per["speech_text"]["samples"] == 2 * 4
    assert per["image_text"]["records"] == 5 and per["image_text"]["samples"] == 2 * 3
    assert per["text"]["records"] == 5 and per["text"]["samples"] == 3
    assert per["dialogs"]["records"] == 5 and per["dialogs"]["samples"] == 2
    # counts and token totals in the manifest match the shards
    for split, sp in manifest["splits"].items():
        ds = ShardDataset(out, split)
        assert sp["rows"] == len(ds) and sp["tokens"] == int(ds.lengths().sum())
        assert sp["response_tokens"] == sum(int(s.response.sum()) for s in ds)
        assert sum(v["rows"] for v in sp["tasks"].values()) == sp["rows"]
        assert {g: v["rows"] for g, v in sp["groups"].items()} == {
            g: ds.column("group").count(g) for g in set(ds.column("group"))
        }
    assert manifest["splits"]["train"]["shards"] == len(list((out / "train").glob("shard-*.parquet")))
    assert all(pq.read_metadata(f).num_rows <= 5 for f in (out / "train").glob("*.parquet"))
    assert set(manifest["tokenizers"]) == {"text", "image", "speech"}
    assert not (out / STAGE).exists()
    report = format_report(manifest)
    assert "missing_file: 4" in report and "too_long: 1" in report


def test_parallel_equals_serial(toks, raw, reference, tmp_path):
    build(_config(toks, raw), out=tmp_path / "p", workers=2, progress=False)
    _assert_same_build(reference[0], tmp_path / "p")


def test_resume_after_an_exception(toks, raw, reference, tmp_path):
    out = tmp_path / "r"
    seen = []

    def stop_after_three(summary):
        seen.append(summary["chunk"])
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(_config(toks, raw), out=out, workers=1, progress=False, on_chunk=stop_after_three)
    assert not (out / "manifest.json").exists()
    assert len(list((out / STAGE / "chunks").iterdir())) == 3
    redone = []
    build(
        _config(toks, raw), out=out, workers=1, progress=False, on_chunk=lambda s: redone.append(s["chunk"])
    )
    assert not set(redone) & set(seen) and redone  # finished chunks were not redone
    _assert_same_build(reference[0], out)


def test_resume_after_a_worker_is_killed(toks, raw, reference, tmp_path):
    out = tmp_path / "k"
    cfg = _config(toks, raw, chunk_size=1)

    def kill_worker(summary):
        os.kill(summary["pid"], signal.SIGKILL)

    with pytest.raises(AromniError, match="worker process died"):
        build(cfg, out=out, workers=2, progress=False, on_chunk=kill_worker)
    assert not (out / "manifest.json").exists()
    build(cfg, out=out, workers=2, progress=False)
    ref_cfg_out = tmp_path / "ref1"
    build(cfg, out=ref_cfg_out, workers=1, progress=False)
    _assert_same_build(ref_cfg_out, out)
    # chunk size changes the order nothing: the same samples as the chunk_size=2 reference
    assert _tables(out)["train"][1].equals(_tables(reference[0])["train"][1])


def test_output_protection_and_fingerprint(toks, raw, reference, tmp_path):
    with pytest.raises(InputError, match="already holds a finished build"):
        build(_config(toks, raw), out=reference[0], progress=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        build(_config(toks, raw), out=busy, progress=False)
    # an unfinished build of another config is not resumed
    out = tmp_path / "u"

    def stop(_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(_config(toks, raw), out=out, progress=False, on_chunk=stop)
    with pytest.raises(InputError, match="different config"):
        build(_config(toks, raw, max_len=90), out=out, progress=False)
    m = build(_config(toks, raw, max_len=90), out=out, progress=False, overwrite=True)
    assert m["report"]["skipped"]["too_long"] > 1  # the smaller max_len took effect


def test_config_errors(toks, raw, tmp_path):
    with pytest.raises(ConfigError, match="unknown keys"):
        _config(toks, raw, shuffle=True)
    with pytest.raises(ConfigError, match="unknown type"):
        build(
            _config(toks, raw, sources=[{"type": "video", "paths": "x"}]), out=tmp_path / "a", progress=False
        )
    with pytest.raises(ConfigError, match="matches no input files"):
        build(
            _config(toks, raw, sources=[{"type": "text", "paths": "*.nothing"}]),
            out=tmp_path / "b",
            progress=False,
        )
    no_speech = _config(
        toks,
        raw,
        tokenizers={"text": str(toks["root"] / "text")},
        layout="compact",
        sources=[{"type": "speech_text", "paths": "speech.tsv"}],
    )
    with pytest.raises(ConfigError, match="needs a speech tokenizer"):
        build(no_speech, out=tmp_path / "c", progress=False)
    with pytest.raises(ConfigError, match="tasks"):
        build(
            _config(toks, raw, sources=[{"type": "image_text", "paths": "images.jsonl", "tasks": ["asr"]}]),
            out=tmp_path / "d",
            progress=False,
        )


def test_bundle_and_cli(toks, raw, tmp_path, capsys):
    from aromni.bundle import save_bundle
    from aromni.cli.main import main
    from aromni.models.config import DecoderConfig
    from aromni.models.decoder import Decoder

    layout = toks["layout"]
    dec = Decoder(DecoderConfig(vocab_size=layout.vocab_size, dim=32, n_layers=1, n_heads=2, max_seq_len=64))
    save_bundle(
        tmp_path / "bundle",
        dec,
        layout,
        text=toks["text"],
        image=toks["image"],
        speech=toks["speech"],
        style="paper",
    )
    cfg = {
        "bundle": "bundle",
        "out": "shards",
        "max_len": 400,
        "sources": [{"type": "image_text", "paths": str(raw / "images.jsonl"), "tasks": ["caption"]}],
    }
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["data", "build", "--config", str(tmp_path / "data.yaml"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "caption 3" in printed and "bad_image: 1" in printed
    m = read_manifest(tmp_path / "shards")
    assert m["prompt_style"] == "paper"
    s = ShardDataset(tmp_path / "shards")[0]
    conv = decode_conversation(s.ids, layout, toks["text"], "paper")  # framed in the bundle's style
    assert conv.turns[1].segments[0].text == CAPTIONS[0]
    assert main(["data", "build", "--config", str(tmp_path / "data.yaml"), "--quiet"]) == 2
    assert "already holds a finished build" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "shards")]) == 0
    assert "caption 3" in capsys.readouterr().out


def test_shipped_configs_parse():
    from aromni.training.data.sources import make_source

    configs = sorted((Path(__file__).parents[2] / "configs" / "data").glob("*.yaml"))
    assert configs
    for path in configs:
        cfg = BuildConfig.load(path)
        for i, s in enumerate(cfg.sources):
            make_source(i, s, cfg.base)
