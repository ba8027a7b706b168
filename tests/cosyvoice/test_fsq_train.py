"""The FSQ tokenizer's CTC recipe on the loop: the loss falls on a memorisable set, an interrupted and resumed run
equals the uninterrupted one bit for bit, the summary scores the test split (CER, WER, code usage), the CLI's
fsq-train / fsq-encode work on a fresh parser and write what they promise, and bad input gives one-line errors."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from aromni.cli.commands import _cv_fsq
from aromni.cosyvoice.data import read_manifest
from aromni.cosyvoice.fsq_tokenizer import FSQSpeechTokenizer
from aromni.errors import AromniError, ConfigError, InputError
from aromni.tokenizers.speech.audio_io import load_audio, save_wav
from aromni.training.metrics import read_metrics
from aromni.training.recipes.fsq_tokenizer import FSQTrainer, code_usage, encode_clips
from aromni.training.recipes.fsq_tokenizer_config import FSQTrainConfig

TINY = {"dim": 32, "heads": 2, "encoder1_layers": 1, "encoder2_layers": 1, "code_dims": 4, "fsmn_kernel": 5}
WORDS = ["ab", "ba", "cab", "bad", "a"]
FREQ = {"a": 300.0, "b": 900.0, "c": 1800.0, "d": 2700.0}


def _say(text: str) -> torch.Tensor:
    """16 kHz audio of ``text``: 0.1 s of a tone per letter, 0.08 s of silence per space."""
    parts = []
    for ch in text:
        n = 1280 if ch == " " else 1600
        t = torch.arange(n) / 16000
        parts.append(torch.zeros(n) if ch == " " else 0.4 * torch.sin(2 * math.pi * FREQ[ch] * t))
    return torch.cat(parts + [torch.zeros(800)])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    rows = []
    for split, n in (("train", 12), ("validation", 4), ("test", 5)):
        for i in range(n):
            text = " ".join(WORDS[(i + k + len(split)) % len(WORDS)] for k in range(1 + i % 3))
            rel = f"speech/{split}/{i:03d}.wav"
            wav = _say(text)
            save_wav(root / rel, wav, 16000)
            rows.append({"path": rel, "split": split, "transcript": text, "voice": f"v{i % 2}",
                         "duration_s": wav.numel() / 16000})
    (root / "speech.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _cfg(world, **changes) -> FSQTrainConfig:
    base = {"world": str(world), "model": TINY, "steps": 6, "batch_size": 4, "warmup_steps": 2, "log_every": 2,
            "eval_every": 3, "save_every": 2, "val_clips": 4, "eval_batch_size": 3, "lr": 3e-3}
    return FSQTrainConfig.from_dict({**base, **changes})


def test_ctc_loss_falls_on_a_memorisable_set(world, tmp_path):
    trainer = FSQTrainer(_cfg(world, steps=40, warmup_steps=0, max_train_clips=4, min_lr_ratio=1.0), tmp_path,
                         progress=False)
    logs = [trainer.loop.train_step() for _ in range(40)]
    first, last = sum(x["loss"] for x in logs[:5]) / 5, sum(x["loss"] for x in logs[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    assert all(x["batch_codes"] >= 1 and x["grad_norm"] > 0 for x in logs)


def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(world, tmp_path):
    cfg = _cfg(world)
    whole = FSQTrainer(cfg, tmp_path / "whole", progress=False).run()
    cut = FSQTrainer(cfg, tmp_path / "cut", progress=False).run(until=3)
    assert cut["step"] == 3 and not cut["done"] and "test" not in cut
    resumed = FSQTrainer(cfg, tmp_path / "cut", progress=False).run()
    assert resumed["done"] and resumed["step"] == whole["step"] == 6
    a = load_file(tmp_path / "whole" / "tokenizer" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "tokenizer" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["last_eval"] == whole["last_eval"] and resumed["test"] == whole["test"]
    evals = [r for r in read_metrics(tmp_path / "cut" / "metrics.jsonl") if r.get("kind") == "eval"]
    assert [r["step"] for r in evals] == [3, 6]


def test_summary_scores_the_test_split_and_the_export_encodes_like_the_model(world, tmp_path):
    trainer = FSQTrainer(_cfg(world, steps=2, eval_every=2), tmp_path, progress=False)
    summary = trainer.run()
    test = summary["test"]
    assert test["clips"] == 5 and 0 <= test["cer"] and 0 <= test["wer"]
    assert 1 <= test["codes_used"] <= 81 and 1.0 <= test["code_perplexity"] <= test["codes_used"]
    assert test["tokens"] == sum(math.ceil(round(c.duration_s * 16000) / 640) for c in read_manifest(world, "test"))
    loaded = FSQSpeechTokenizer.from_pretrained(summary["tokenizer"])
    clips = read_manifest(world, "validation")
    assert encode_clips(loaded, clips, 2) == encode_clips(trainer.model, clips, 3)


def test_code_usage_counts_and_perplexity():
    usage = code_usage([[0, 0, 1], [2]], 9)
    assert usage["tokens"] == 4 and usage["codes_used"] == 3 and usage["code_usage"] == round(3 / 9, 4)
    assert usage["code_perplexity"] == pytest.approx(math.exp(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25))), abs=0.01)


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="aromni cosyvoice")
    _cv_fsq.register(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_trains_and_encodes_every_split(world, tmp_path):
    out, tokens = tmp_path / "run", tmp_path / "tokens.jsonl"
    tiny = [f"model.{k}={v}" for k, v in TINY.items()]
    assert _cli("fsq-train", "--world", str(world), "--out", str(out), "--quiet", "steps=2", "batch_size=2",
                "val_clips=2", "eval_every=2", *tiny) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] and summary["codebook_size"] == 81 and (out / "tokenizer" / "config.json").is_file()
    with pytest.raises(InputError, match="not empty"):
        _cli("fsq-train", "--world", str(world), "--out", str(out), "--quiet", "steps=2")
    with pytest.raises(ConfigError, match="--config cannot be combined"):
        _cli("fsq-train", "--out", str(out), "--resume", "--config", str(tmp_path / "x.yaml"))
    assert _cli("fsq-encode", "--tokenizer", str(out / "tokenizer"), "--world", str(world), "--out", str(tokens),
                "--quiet", "--batch-size", "2") == 0
    rows = [json.loads(line) for line in tokens.read_text().splitlines()]
    assert [r["split"] for r in rows] == ["train"] * 12 + ["validation"] * 4 + ["test"] * 5
    tok = FSQSpeechTokenizer.from_pretrained(out / "tokenizer")
    for r in rows:
        assert set(r) == {"path", "split", "transcript", "voice", "tokens"} and r["path"].startswith("speech/")
        wav = load_audio(world / r["path"], 16000)
        assert r["tokens"] == tok.encode_16k([wav])[0][0].tolist() and len(r["tokens"]) == -(-wav.numel() // 640)
    with pytest.raises(InputError, match="already exists"):
        _cli("fsq-encode", "--tokenizer", str(out / "tokenizer"), "--world", str(world), "--out", str(tokens))
    assert _cli("fsq-encode", "--tokenizer", str(out / "tokenizer"), "--world", str(world), "--out", str(tokens),
                "--splits", "test", "--overwrite", "--quiet") == 0
    assert len(tokens.read_text().splitlines()) == 5


@pytest.mark.parametrize("argv, kind, words", [
    (["fsq-train", "--out", "{tmp}/r", "--world", "{tmp}/nowhere"], InputError, "no such world"),
    (["fsq-train", "--out", "{tmp}/r"], InputError, "--world is required"),
    (["fsq-train", "--out", "{tmp}/r", "--world", "{world}", "steps=0"], ConfigError, "steps"),
    (["fsq-train", "--out", "{tmp}/r", "--world", "{world}", "model.code_dims=0"], ConfigError, "code_dims"),
    (["fsq-train", "--out", "{tmp}/r", "--world", "{world}", "colour=1"], ConfigError, "colour"),
    (["fsq-train", "--out", "{tmp}/r", "--resume"], InputError, "no checkpoint"),
    (["fsq-encode", "--tokenizer", "{tmp}", "--world", "{world}", "--out", "{tmp}/t.jsonl"], AromniError,
     "config.json"),
    (["fsq-encode", "--tokenizer", "{tmp}", "--world", "{tmp}/nowhere", "--out", "{tmp}/t.jsonl"], InputError,
     "no such world"),
    (["fsq-encode", "--tokenizer", "{tmp}", "--world", "{world}", "--out", "{tmp}/t.jsonl", "--splits", "dev"],
     InputError, "unknown split"),
])
def test_bad_input_is_one_line_error(world, tmp_path, argv, kind, words):
    argv = [a.format(tmp=tmp_path, world=world) for a in argv]
    with pytest.raises(kind, match=words) as e:
        _cli(*argv)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "r").exists() and not (tmp_path / "t.jsonl").exists()


def test_a_manifest_without_training_clips_is_refused(tmp_path, world):
    (tmp_path / "speech.jsonl").write_text((world / "speech.jsonl").read_text().replace('"train"', '"other"'))
    with pytest.raises(InputError, match="no clips in split 'train'"):
        FSQTrainer(_cfg(tmp_path), tmp_path / "run", progress=False)


def test_a_run_ended_by_its_time_limit_still_scores_the_test_split(world, tmp_path):
    summary = FSQTrainer(_cfg(world, steps=50, time_limit_min=1e-6), tmp_path, progress=False).run()
    assert summary["step"] == 1 and not summary["done"] and summary["test"]["clips"] == 5
    paused = FSQTrainer(_cfg(world, steps=50), tmp_path / "paused", progress=False).run(until=1)
    assert "test" not in paused
