"""Codec training: runs end to end on audio files, exports a loadable tokenizer, resumes exactly, GAN phase."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aromni.cli.main import main
from aromni.errors import ConfigError, InputError
from aromni.tokenizers.base import load_tokenizer
from aromni.tokenizers.speech.audio_io import save_wav
from aromni.tokenizers.speech.codec.data import ClipSet, list_audio_files, split_files
from aromni.training.loop import find_checkpoint
from aromni.training.recipes.codec import (
    CodecTrainConfig,
    CodecTrainer,
    load_train_config,
    lr_at,
    train_codec,
)

FAST = {"preset": "tiny", "batch_size": 2, "segment_frames": 8, "kmeans_batches": 2, "kmeans_iters": 2, "warmup_steps": 2,
            "log_every": 2, "eval_every": 4, "checkpoint_every": 100, "val_files": 2, "threads": 1}



@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """Eight short 22.05 kHz clips (tones with vibrato + noise), read back at 16 kHz through soxr."""
    d = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    sr = 22050
    for i in range(8):
        t = np.arange(int(sr * (0.6 + 0.1 * i))) / sr
        f0 = 120 + 20 * i + 15 * np.sin(2 * np.pi * 3 * t)
        x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sr) + 0.01 * rng.standard_normal(t.shape)
        save_wav(d / f"clip{i}.wav", x.astype(np.float32), sr)
    return d


def test_training_runs_logs_and_exports_a_loadable_tokenizer(audio_dir, tmp_path):
    out = tmp_path / "run"
    summary = train_codec(CodecTrainConfig(steps=6, **FAST), str(audio_dir), out, progress=False)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_logs = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_logs] == [2, 4, 6]
    for key in ("mel", "stft", "commit", "usage", "perplexity", "steps_per_s", "lr"):
        assert key in train_logs[0]
    assert [r["step"] for r in records if "val_mel_l1" in r] == [4, 6]
    assert summary["step"] == 6 and summary["val_files"] == 2 and summary["train_files"] == 6
    tok = load_tokenizer(out / "tokenizer")
    assert tok.type_name == "aromni_codec" and tok.sample_rate == 16000
    assert tok.encode(torch.zeros(1, 1000)).shape == (1, 3)


def test_resume_is_exact(audio_dir, tmp_path):
    cfg = CodecTrainConfig(steps=6, **{**FAST, "val_files": 0})
    clips = ClipSet(list_audio_files(str(audio_dir)), 16000, progress=False)

    straight = CodecTrainer(cfg, clips, None, tmp_path / "a", progress=False)
    (tmp_path / "a").mkdir()
    straight.run()

    (tmp_path / "b").mkdir()
    first = CodecTrainer(cfg, clips, None, tmp_path / "b", progress=False)
    first.run(until=4)  # "interrupted" after step 4, with its checkpoint
    torch.manual_seed(123)  # a resumed process starts from a different RNG state: the checkpoint must fix it
    second = CodecTrainer(cfg, clips, None, tmp_path / "b", progress=False)
    second.load_checkpoint()
    assert second.step == 4
    second.run()

    sa, sb = straight.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), [k for k in sa if not torch.equal(sa[k], sb[k])]
    la = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    # logged averages too (the interruption is at a log boundary: a log window never straddles it)
    assert [(r["step"], r["loss"], r["usage"]) for r in la] == [(r["step"], r["loss"], r["usage"]) for r in lb]


def test_gan_phase_runs_and_is_checkpointed(audio_dir, tmp_path):
    out = tmp_path / "gan"
    cfg = CodecTrainConfig(steps=3, gan_start_step=1, **{**FAST, "val_files": 0, "log_every": 1})
    train_codec(cfg, str(audio_dir), out, progress=False)
    logs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert "disc" not in logs[0] and {"disc", "adv", "fm"} <= set(logs[1]) and {"disc", "adv", "fm"} <= set(logs[2])
    last = find_checkpoint(out)
    state = torch.load(last / "trainer_state.pt", weights_only=True)
    assert set(state["optimizers"]) == {"opt", "opt_d"}
    assert any(k.startswith("disc.") for k in load_file(str(last / "model.safetensors")))


def test_cli_train_refuses_to_clobber_and_resumes(audio_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["codec", "train", "--audio", str(audio_dir), "--out", str(out), "--quiet", "preset=tiny",
            "steps=2", "batch_size=2", "segment_frames=8", "kmeans_batches=2", "kmeans_iters=1", "val_files=1",
            "log_every=1", "threads=1"]
    assert main(args) == 0
    assert main(args) == 2  # out not empty, neither --resume nor --overwrite
    assert "already exists" in capsys.readouterr().err
    # flags go before key=value; the resumed run keeps its settings except the ones given (here: a GAN phase)
    assert main(args[:6] + ["--resume", "steps=4", "gan_start_step=3"]) == 0
    assert json.loads((out / "summary.json").read_text())["step"] == 4
    logs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [("disc" in r) for r in logs] == [False, False, False, True]
    assert json.loads((find_checkpoint(out) / "trainer.json").read_text())["config"]["batch_size"] == 2
    assert main(["codec", "train", "--audio", str(audio_dir), "--out", str(tmp_path / "new"), "--resume"]) == 2
    assert main(["codec", "train", "--audio", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert main(["codec", "reconstruct", "--model", str(out / "tokenizer"), str(audio_dir / "clip0.wav"),
                 "--chunk", "2", "--out", str(tmp_path / "rec")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["mel_l1"] > 0 and (tmp_path / "rec" / "clip0.rec.wav").is_file()


def test_config_loading_and_validation(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("preset: tiny\nsteps: 50\ncodec:\n  dec_dim: 48\n")
    cfg = load_train_config(y, ["codec.lookahead=2", "lr=0.002", "betas=[0.5, 0.9]"])
    assert cfg.steps == 50 and cfg.codec == {"dec_dim": 48, "lookahead": 2} and cfg.lr == 0.002
    assert cfg.betas == (0.5, 0.9) and cfg.codec_config().lookahead == 2
    with pytest.raises(ConfigError):
        load_train_config(None, ["nonsense=1"])
    with pytest.raises(ConfigError):
        load_train_config(None, ["codec.hop_length=401"])
    with pytest.raises(ConfigError):
        load_train_config(None, ["steps"])
    with pytest.raises(InputError):
        load_train_config(tmp_path / "missing.yaml", [])


def test_lr_schedule_and_split():
    cfg = CodecTrainConfig(steps=100, warmup_steps=10, lr=1e-3, lr_min_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-4) and lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(1e-3) and lr_at(100, cfg) == pytest.approx(1e-4)
    from pathlib import Path

    files = [Path(f"f{i}.wav") for i in range(20)]
    train, val = split_files(files, 3)
    assert len(val) == 3 and not set(train) & set(val)
    assert split_files(files + [Path("zz.wav")], 3)[1] == val or len(split_files(files + [Path("zz.wav")], 3)[1]) == 3
    with pytest.raises(InputError):
        split_files(files[:3], 3)
