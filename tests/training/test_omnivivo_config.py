"""The OmniVIVO speech stage's settings: the paper's defaults, the shipped toy config, strict validation with
one-line errors (unknown keys, missing inputs, bad values, a checkpoint window that cannot be averaged, the speech
path's own checks), absolute input paths, and which settings a resume may change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aromni.errors import ConfigError, InputError
from aromni.training.checkpoint import CHECKPOINTS, TRAINER_STATE, step_dir
from aromni.training.recipes.omnivivo_config import VivoTrainConfig, load_train_config, resume_config

ROOT = Path(__file__).resolve().parents[2]
INPUTS = {"backbone": "bb", "conditioner": "cond", "speech_tokenizer": "tok", "train_manifest": "train.jsonl"}


def _cfg(**changes: object) -> VivoTrainConfig:
    return VivoTrainConfig.from_dict({**INPUTS, **changes})


def test_defaults_are_the_papers():
    cfg = _cfg()
    assert (cfg.lr, cfg.betas, cfg.weight_decay, cfg.grad_clip, cfg.batch_size, cfg.steps, cfg.average_last) == (
        1e-4, (0.9, 0.999), 0.01, 1.0, 14, 100_000, 5)
    vivo = cfg.vivo_config(6561)  # CosyVoice2's codebook
    assert vivo.speech_vocab == 6561 and vivo.branch_layers == 8 and (vivo.lora.r, vivo.lora.alpha) == (16, 16.0)


def test_the_toy_config_loads_and_overrides_apply():
    cfg = load_train_config(ROOT / "configs/omnivivo/toy_speech.yaml", ["vivo.lora.r=4", "steps=1500"])
    vivo = cfg.vivo_config(1024)
    assert (vivo.branch_layers, vivo.lora.r, vivo.lora.alpha, vivo.max_speech_len) == (2, 4, 16.0, 400)
    assert cfg.steps == 1500 and cfg.lr == 1e-3 and cfg.betas == (0.9, 0.999)


@pytest.mark.parametrize("changes, fragment", [
    ({"nope": 1}, "unknown keys ['nope']"),
    ({"backbone": ""}, "backbone is not set"),
    ({"train_manifest": " "}, "train_manifest is not set"),
    ({"lr": 0}, "lr must be positive"),
    ({"lr": "fast"}, "lr: expected a number"),
    ({"betas": [0.9]}, "betas: expected 2 values"),
    ({"betas": [0.9, 1.0]}, "betas must be two numbers in [0, 1)"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"steps": True}, "steps: expected an integer"),
    ({"precision": "fp16"}, "precision 'fp16'"),
    ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
    ({"keep_last": 3, "average_last": 5}, "keep_last 3 keeps fewer checkpoints than the average_last 5"),
    ({"steps": 100, "save_every": 40}, "gives only 3 checkpoint(s)"),
    ({"vivo": {"speech_vocab": 12}}, "vivo.speech_vocab is set by the speech tokenizer"),
    ({"vivo": {"branch_layer": 2}}, "vivo config: unknown fields ['branch_layer']"),
    ({"vivo": {"speech_rope": "2d"}}, "unknown speech_rope '2d'"),
    ({"vivo": {"lora": {"r": 0}}}, "r must be a positive integer"),
    ({"vivo": {"lora": {"target_modules": ["output"]}}}, "frozen image path"),
])
def test_bad_settings_are_one_line_config_errors(changes, fragment):
    with pytest.raises(ConfigError) as e:
        _cfg(**changes)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_a_missing_config_file_names_it(tmp_path):
    with pytest.raises(InputError, match="no such config file"):
        load_train_config(tmp_path / "missing.yaml", [])


def test_inputs_become_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _cfg(val_manifest="data/val.jsonl").resolved()
    assert cfg.backbone == str(tmp_path / "bb") and cfg.val_manifest == str(tmp_path / "data" / "val.jsonl")
    assert _cfg(val_manifest="").val_manifest is None


def _saved_run(out: Path, cfg: VivoTrainConfig) -> None:
    d = step_dir(out / CHECKPOINTS, 4)
    d.mkdir(parents=True)
    (d / TRAINER_STATE).write_bytes(b"")
    (d / "trainer.json").write_text(json.dumps({"step": 4, "config": cfg.to_dict()}))


def test_resume_reads_the_saved_settings_and_allows_only_safe_changes(tmp_path):
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        resume_config(tmp_path, [])
    _saved_run(tmp_path, _cfg(steps=10, save_every=2, vivo={"branch_layers": 2}))
    cfg = resume_config(tmp_path, ["steps=20", "average_last=2"])
    assert (cfg.steps, cfg.average_last, cfg.vivo, cfg.backbone) == (20, 2, {"branch_layers": 2}, "bb")
    for change in ("lr=1e-3", "vivo.branch_layers=3", "backbone=other"):
        with pytest.raises(ConfigError, match="cannot change .* when resuming"):
            resume_config(tmp_path, [change])
