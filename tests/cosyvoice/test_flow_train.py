"""The flow recipe: a smoke run writes metrics, checkpoints, the export and the summary; an interrupted and
resumed run equals an uninterrupted one to the bit; the CLI command registers and runs."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from safetensors.torch import load_file

from aromni.cli.commands import _cv_flow
from aromni.cosyvoice.flow import Token2Mel
from aromni.errors import InputError
from aromni.tokenizers.speech.audio_io import save_wav
from aromni.training.recipes.cosyvoice_flow import train_flow
from aromni.training.recipes.cosyvoice_flow_config import FlowTrainConfig, load_flow_train_config

TINY = ["model.encoder.d_model=32", "model.encoder.heads=2", "model.encoder.linear_units=64",
        "model.encoder.num_blocks=1", "model.encoder.num_up_blocks=1", "model.estimator.channels=32",
        "model.estimator.attention_head_dim=16", "model.estimator.num_heads=2", "model.estimator.num_mid_blocks=1",
        "batch_size=3", "crop_tokens=10", "eval_clips=2", "eval_batch=2", "n_timesteps=2", "log_every=1",
        "checkpoint_every=2", "eval_every=0", "warmup_steps=1", "vocab_size=40", "threads=1"]


def make_world(root, n_train: int = 5, n_test: int = 2, vocab: int = 40):
    """A folder of short 22.05 kHz clips and a token JSONL with random 25 Hz ids (lengths as the tokenizer's)."""
    g = torch.Generator().manual_seed(0)
    lines = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            seconds = 0.6 + 0.2 * i
            t = torch.arange(int(22050 * seconds)) / 22050
            wav = 0.3 * torch.sin(2 * torch.pi * (150 + 40 * i) * t) + 0.01 * torch.randn(t.shape, generator=g)
            rel = f"speech/{split}/{i:03d}.wav"
            (root / "speech" / split).mkdir(parents=True, exist_ok=True)
            save_wav(root / rel, wav, 22050)
            toks = torch.randint(0, vocab, (int(seconds * 25),), generator=g).tolist()
            lines.append({"path": rel, "split": split, "transcript": "x", "voice": "v", "tokens": toks})
    (root / "tokens.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root / "tokens.jsonl"


def cfg(steps: int, *extra: str) -> FlowTrainConfig:
    return load_flow_train_config(None, [*TINY, f"steps={steps}", *extra])


def test_smoke_run_export_and_summary(tmp_path):
    tokens = make_world(tmp_path / "world")
    summary = train_flow(cfg(3, "eval_every=3"), tokens, tmp_path / "world", tmp_path / "run", progress=False)
    assert summary["step"] == 3 and summary["vocab_size"] == 40 and summary["eval_clips"] == 2
    for key in ("test_mel_l1_sampled", "test_mel_l1_mu", "test_mel_l1_mean"):
        assert summary[key] > 0
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records) and any("test_mel_l1_sampled" in r for r in records)
    model = Token2Mel.from_pretrained(tmp_path / "run" / "flow")
    assert model.speaker is not None and model.speaker.shape == (192,)
    mel = model.inference(torch.randint(0, 40, (1, 5)), n_timesteps=2)
    assert mel.shape == (1, 80, 10) and torch.isfinite(mel).all()
    # spk=None uses the exported speaker vector; another speaker changes the output
    tokens5 = torch.randint(0, 40, (1, 5))
    default = model.inference(tokens5, n_timesteps=2)
    assert torch.equal(default, model.inference(tokens5, spk=model.speaker, n_timesteps=2))
    assert not torch.equal(default, model.inference(tokens5, spk=torch.randn(192), n_timesteps=2))


def test_resume_is_bitwise_identical(tmp_path):
    tokens = make_world(tmp_path / "world")
    full = train_flow(cfg(4), tokens, tmp_path / "world", tmp_path / "a", progress=False)
    train_flow(cfg(4), tokens, tmp_path / "world", tmp_path / "b", progress=False, until=2)
    again = train_flow(cfg(4), tokens, tmp_path / "world", tmp_path / "b", progress=False, resume=True)
    a = load_file(str(tmp_path / "a" / "flow" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "flow" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(load_file(str(tmp_path / "a" / "flow" / "speaker.safetensors"))["embedding"],
                       load_file(str(tmp_path / "b" / "flow" / "speaker.safetensors"))["embedding"])
    assert full["test_mel_l1_sampled"] == again["test_mel_l1_sampled"]
    with pytest.raises(InputError, match="not empty"):
        train_flow(cfg(4), tokens, tmp_path / "world", tmp_path / "a", progress=False)


def test_cli_registers_and_runs(tmp_path, capsys):
    tokens = make_world(tmp_path / "world")
    parser = argparse.ArgumentParser()
    _cv_flow.register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["flow-train", "--tokens", str(tokens), "--world", str(tmp_path / "world"),
                              "--out", str(tmp_path / "run"), "--quiet", *TINY, "steps=2", "eval_clips=0"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 2
    args = parser.parse_args(["flow-train", "--tokens", str(tokens), "--world", str(tmp_path / "world"),
                              "--out", str(tmp_path / "run"), "--quiet", "--resume", "steps=3"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 3
    # flow-eval on the export: with a prompt only the rest of each clip is scored
    base = ["flow-eval", "--model", str(tmp_path / "run" / "flow"), "--tokens", str(tokens), "--world",
            str(tmp_path / "world"), "--clips", "2", "--n-timesteps", "2", "--quiet"]
    assert parser.parse_args(base).func(parser.parse_args(base)) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    args = parser.parse_args([*base, "--prompt-ratio", "0.5", "--streaming"])
    assert args.func(args) == 0
    prompted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert plain["test_mel_l1_sampled"] > 0 and prompted["test_mel_l1_mu"] > 0
    assert 0 < prompted["eval_frames"] < plain["eval_frames"] and prompted["streaming"] is True
