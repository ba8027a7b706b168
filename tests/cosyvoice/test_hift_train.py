"""HiFT training on the loop: a smoke run with an exact resume, the export, the CLI (register on a fresh parser,
hift-train, vocode) and its one-line errors."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aromni.cli.commands import _cv_hift
from aromni.cli.main import main as aromni_main
from aromni.cosyvoice.hift.generator import HiFTGenerator
from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.tokenizers.speech.audio_io import save_wav
from aromni.training.recipes.cosyvoice_hift import train_hift
from aromni.training.recipes.cosyvoice_hift_config import HiFTTrainConfig, resume_hift_config

SETTINGS = dict(hift={"base_channels": 16, "f0_channels": 8}, steps=4, batch_size=2, segment_frames=6,
                checkpoint_every=2, eval_every=2, log_every=1, train_clips=4, test_clips=2,
                griffin_lim_iters=2, threads=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A speech manifest of harmonic tones at 16 kHz (4 train, 2 test clips of 0.4-0.6 s)."""
    root = tmp_path_factory.mktemp("world")
    rows = []
    for i, split in enumerate(["train"] * 4 + ["test"] * 2):
        t = torch.arange(int(16000 * (0.4 + 0.05 * i))) / 16000
        phase = 2 * math.pi * (110 + 20 * i) * t
        wav = 0.3 * torch.sin(phase) + 0.1 * torch.sin(2 * phase)
        save_wav(root / f"{i}.wav", wav, 16000)
        rows.append({"path": f"{i}.wav", "transcript": "tone", "split": split, "voice": f"v{i}"})
    (root / "speech.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_smoke_and_exact_resume(world: Path, tmp_path: Path) -> None:
    full = train_hift(HiFTTrainConfig(**SETTINGS), world, tmp_path / "full", progress=False, figure=False)
    assert full["step"] == 4 and full["test_clips"] == 2
    assert math.isfinite(full["test_mel_l1"]) and math.isfinite(full["griffin_lim_test_mel_l1"])
    train_hift(HiFTTrainConfig(**SETTINGS), world, tmp_path / "cut", progress=False, until=2, figure=False)
    assert [p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()] == ["step-00000002"]
    resumed = train_hift(resume_hift_config(tmp_path / "cut", []), world, tmp_path / "cut", resume=True,
                         progress=False, figure=False)
    assert resumed["step"] == 4
    a = load_file(str(tmp_path / "full" / "hift" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "hift" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert any("test_mel_l1" in r for r in records) and any("f0" in r for r in records)
    model = HiFTGenerator.from_pretrained(tmp_path / "full" / "hift")
    assert model.inference(torch.randn(1, 80, 2))[0].shape == (1, 960)


def test_run_dir_is_not_overwritten(world: Path, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(InputError, match="not empty"):
        train_hift(HiFTTrainConfig(**SETTINGS), world, tmp_path, progress=False)
    with pytest.raises(InputError, match="no checkpoint"):
        resume_hift_config(tmp_path / "none", [])
    with pytest.raises(ConfigError, match="segment_frames"):
        HiFTTrainConfig(segment_frames=0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aromni cosyvoice")
    _cv_hift.register(parser.add_subparsers(dest="cv_command", required=True))
    return parser


def test_cli_register_train_and_vocode(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["hift-train", "--world", str(world), "--out", str(tmp_path / "run"), "--quiet",
                                 *[f"{k}={json.dumps(v)}" for k, v in SETTINGS.items() if k != "hift"],
                                 "hift.base_channels=16", "hift.f0_channels=8", "steps=2"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 2 and Path(summary["hift"]).is_dir()
    out = tmp_path / "re.wav"
    args = _parser().parse_args(["vocode", "--hift", summary["hift"], "--input", str(world / "0.wav"),
                                 "--out", str(out)])
    assert args.func(args) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert out.is_file() and line["frames"] == int(0.4 * 24000) // 480
    with pytest.raises(InputError, match="exists"):
        args.func(args)  # no silent overwrite


def test_cli_errors_are_one_line(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = aromni_main(["cosyvoice", "vocode", "--hift", str(tmp_path / "nothing"), "--input", str(world / "0.wav"),
                          "--out", str(tmp_path / "x.wav")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "config.json" in err
    with pytest.raises(CheckpointError):
        HiFTGenerator.from_pretrained(tmp_path)
    code = aromni_main(["cosyvoice", "hift-train", "--world", str(tmp_path / "no_world"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "speech manifest" in err
