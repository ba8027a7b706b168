"""The LlamaGen VQ recipe on the loop core: it learns a tiny memorisable set, an interrupted and resumed run equals an
uninterrupted one bit for bit (GAN and colour terms included), the export reloads and encodes identically, the
evaluation reports reconstruction, usage and the image judge's accuracy, and bad settings or data are refused with
one clear error."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from aromni.errors import ConfigError
from aromni.tokenizers.base import load_tokenizer
from aromni.tokenizers.image.dataset import to_model_range
from aromni.tokenizers.image.llamagen_vq import LlamaGenVQ
from aromni.toyworld.judges.image_data import render_set
from aromni.training.loop import find_checkpoint
from aromni.training.metrics import read_metrics
from aromni.training.recipes.llamagen_vq import LlamaGenVQTrainer
from aromni.training.recipes.llamagen_vq_config import (
    LlamaGenVQTrainConfig,
    load_vq_train_config,
    resume_vq_config,
)

# A VQ of LlamaGen's architecture small enough for a few CPU steps: 16 px -> 4x4 codes from 32 entries.
TINY = {"ch": 32, "encoder_ch_mult": [1, 1, 2], "decoder_ch_mult": [1, 1, 2], "z_channels": 32,
        "num_res_blocks": 1, "codebook_size": 32, "image_size": 16}


def _images(n: int = 6, size: int = 16) -> torch.Tensor:
    """``n`` uint8 images ``[n, 3, size, size]``: a coloured square on a grey ground, one colour each."""
    g = torch.Generator().manual_seed(0)
    out = torch.full((n, 3, size, size), 40, dtype=torch.uint8)
    for i in range(n):
        colour = torch.randint(0, 256, (3, 1, 1), generator=g, dtype=torch.uint8)
        out[i, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = colour
    return out


def _cfg(**changes: object) -> LlamaGenVQTrainConfig:
    base = {"model": TINY, "steps": 8, "batch_size": 4, "warmup_steps": 2, "log_every": 2, "eval_every": 4,
            "save_every": 3, "val_images": 1, "color_patch": 4}
    return LlamaGenVQTrainConfig.from_dict({**base, **changes})


def test_loss_goes_down_on_a_memorisable_set(tmp_path):
    trainer = LlamaGenVQTrainer(_cfg(steps=40, lr=3e-3, val_images=0), _images(4), tmp_path, progress=False)
    logs = [trainer.loop.train_step() for _ in range(40)]
    first = sum(x["l2"] for x in logs[:5]) / 5
    last = sum(x["l2"] for x in logs[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    assert all(0.0 < x["usage"] <= 1.0 and x["codebook"] >= 0 and x["commitment"] >= 0 for x in logs)


def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(tmp_path):
    # The GAN phase and the colour terms on, so every optimizer and every branch of the step is resumed.
    cfg = _cfg(gan_start=2, color_weight=1.0, fg_weight=1.0)
    images = _images()
    whole = LlamaGenVQTrainer(cfg, images, tmp_path / "whole", progress=False).run()
    stopped = LlamaGenVQTrainer(cfg, images, tmp_path / "cut", progress=False).run(until=5)
    assert stopped["step"] == 5 and not stopped["done"] and find_checkpoint(tmp_path / "cut").name == "step-00000005"
    resumed = LlamaGenVQTrainer(cfg, images, tmp_path / "cut", progress=False).run()
    assert resumed["done"] and resumed["step"] == whole["step"] == 8
    for name in ("tokenizer/model.safetensors", "checkpoints/step-00000008/model.safetensors"):
        a, b = load_file(tmp_path / "whole" / name), load_file(tmp_path / "cut" / name)
        assert a.keys() == b.keys() and any(k.startswith("disc.") for k in a) == name.startswith("checkpoints")
        assert all(torch.equal(a[k], b[k]) for k in a), name
    records = read_metrics(tmp_path / "cut" / "metrics.jsonl")
    evals = [r for r in records if r.get("kind") == "eval"]
    assert [r["step"] for r in evals] == [4, 8] and resumed["last_eval"] == whole["last_eval"]
    steps = [r for r in records if "loss" in r]
    assert all({"color", "fg_l1", "grad_norm"} <= set(r) for r in steps)
    assert ["gan_d" in r for r in steps] == [r["step"] > 2 for r in steps]  # the GAN joins at step 2


def test_export_reloads_and_encodes_identically(tmp_path):
    images = _images()
    trainer = LlamaGenVQTrainer(_cfg(steps=3), images, tmp_path, progress=False)
    summary = trainer.run()
    for loaded in (LlamaGenVQ.from_pretrained(summary["tokenizer"]), load_tokenizer(summary["tokenizer"])):
        x = to_model_range(images)
        model = trainer.model.eval()
        assert torch.equal(loaded.encode(x), model.encode(x))
        codes = model.encode(x)
        assert torch.equal(loaded.decode(codes), model.decode(codes))
    assert summary["parameters"] == sum(p.numel() for p in trainer.model.parameters())


def test_evaluation_reports_reconstruction_usage_and_the_judge(tmp_path):
    tiny64 = {**TINY, "encoder_ch_mult": [1, 1, 1, 1, 2], "decoder_ch_mult": [1, 1, 1, 1, 2], "image_size": 64}
    images, _ = render_set(5, "test-llamagen-vq")
    trainer = LlamaGenVQTrainer(_cfg(model=tiny64, steps=1, judge_images=3, color_patch=8), images, tmp_path,
                                progress=False)
    record = trainer.run()["last_eval"]
    assert record["split"] == "val" and record["images"] == 1 and record["psnr"] > 0
    assert 1 <= record["codes_used"] <= 16 and record["code_usage"] == round(record["codes_used"] / 32, 4)
    judge = {k: v for k, v in record.items() if k.startswith("judge_")}
    assert set(judge) == {"judge_shape", "judge_color", "judge_size", "judge_position", "judge_background",
                          "judge_all"}
    assert all(0.0 <= v <= 1.0 for v in judge.values())
    assert not trainer.recipe.judge.model.training


@pytest.mark.parametrize("changes, message", [
    ({"steps": 0}, "steps must be positive"),
    ({"lr": -1.0}, "lr must be positive"),
    ({"betas": [0.9, 1.5]}, "betas must be two numbers in [0, 1)"),
    ({"betas": [0.9]}, "betas: expected 2 values"),
    ({"min_lr_ratio": 2.0}, "min_lr_ratio must be in [0, 1]"),
    ({"l1_weight": 0.0, "l2_weight": 0.0}, "a VQ needs a pixel loss"),
    ({"color_weight": -1.0}, "color_weight must be a finite number >= 0"),
    ({"color_patch": 5}, "color_patch must divide the image size 16"),
    ({"judge_images": 4}, "judge_images needs 64x64 images"),
    ({"preset": "VQ-99"}, "unknown llamagen vq preset"),
    ({"model": {**TINY, "ch": 20}}, "not multiples of 32"),
    ({"lerning_rate": 1.0}, "unknown keys"),
    ({"steps": "many"}, "steps: expected"),
])
def test_bad_settings_are_refused_with_one_clear_error(changes, message):
    with pytest.raises(ConfigError) as e:
        _cfg(**changes)
    assert message in str(e.value)


def test_bad_data_and_resume_changes_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"uint8 \[N, 3, 16, 16\]"):
        LlamaGenVQTrainer(_cfg(), _images(size=32), tmp_path / "a", progress=False)
    LlamaGenVQTrainer(_cfg(steps=2), _images(), tmp_path / "b", progress=False).run()
    with pytest.raises(ConfigError, match="trained on 6 images, 5 given"):
        LlamaGenVQTrainer(_cfg(steps=3), _images(5), tmp_path / "b", progress=False).run()
    with pytest.raises(ConfigError, match=r"cannot change \['lr'\] when resuming"):
        resume_vq_config(tmp_path / "b", ["steps=4", "lr=0.1"])
    assert resume_vq_config(tmp_path / "b", ["steps=4"]).steps == 4
    cfg = load_vq_train_config(None, ["steps=3"], images="data/*.png")  # a glob is not YAML: set as given
    assert cfg.images == "data/*.png" and cfg.steps == 3
