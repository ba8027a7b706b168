"""The toy-world recipe end to end on its smoke config (every stage, tiny sizes; about 1-2 minutes)."""

import json
from pathlib import Path

import pytest

from aromni.bundle import Bundle
from aromni.errors import ConfigError
from aromni.toyworld.recipe import IMAGE_PHASE_TASKS, PRETRAIN_TASKS, STAGES, Recipe, RecipeConfig

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "toyworld" / "smoke.yaml"


@pytest.mark.slow
def test_smoke_recipe_runs_every_stage_and_resumes(tmp_path):
    out = tmp_path / "run"
    lines: list[str] = []
    summary = Recipe(RecipeConfig.from_yaml(SMOKE), out, log=lines.append).run()
    assert set(summary["stages_seconds"]) == set(STAGES)
    # the shipped-style bundle: fp16 weights, all three tokenizers, paper prompt style
    b = Bundle.load(out / "bundle")
    assert {b.text is not None, b.image is not None, b.speech is not None} == {True}
    assert b.style.name == "paper" and next(b.decoder.parameters()).dtype.is_floating_point
    cfg = json.loads((out / "bundle" / "config.json").read_text())
    assert cfg["layout"]["vocab_size"] == b.decoder.cfg.vocab_size
    # stage 1a saw only the image pairs, from scratch; stage 1b the single-turn pre-training tasks, from stage
    # 1a's model; stage 2 everything
    img = json.loads((out / "pretrain_images" / "train_config.json").read_text())
    assert img["config"]["data"]["tasks"] == IMAGE_PHASE_TASKS and img["config"]["model"]["decoder"]
    assert {g for g, n in img["data"]["per_group"].items() if n} == {"t2i", "caption"}
    pre = json.loads((out / "pretrain" / "train_config.json").read_text())
    assert pre["config"]["data"]["tasks"] == PRETRAIN_TASKS
    assert pre["config"]["model"]["init_from"] == str(out / "pretrain_images" / "bundle")
    assert not pre["config"]["model"]["decoder"] and not pre["config"]["model"]["image_embed_init"]
    assert pre["data"]["other_task"] > 0 and pre["data"]["kept"] + pre["data"]["other_task"] == pre["data"]["samples"]
    sft = json.loads((out / "sft" / "train_config.json").read_text())
    assert sft["config"]["data"]["tasks"] == [] and sft["data"]["other_task"] == 0
    # the report has the metric table and its figures
    report = (out / "report" / "report.md").read_text()
    assert "## Metrics and targets" in report and (out / "report" / "loss.png").is_file()
    metrics = json.loads((out / "eval.json").read_text())
    assert {r["key"].split(".")[0] for r in metrics["summary"]} >= {"asr", "tts", "caption", "t2i", "chat_image"}
    # Table 7: three stage-1 variants at equal steps next to AR-Omni's stage 1, all from scratch (the main
    # stage 1 had an image phase before it, so its AR-Omni row is retrained without one)
    md = Recipe(RecipeConfig.from_yaml(SMOKE), out, log=lines.append).ablate()
    abl = json.loads((md.parent / "metrics.json").read_text())["ablation"]
    assert [r["name"] for r in abl] == ["ar-omni", "no-perceptual", "no-swin-norm", "simple-ntp"]
    for name in ("ar-omni", "no-perceptual", "no-swin-norm", "simple-ntp"):
        cfg = json.loads((out / "ablations" / name / "train_config.json").read_text())["config"]
        assert cfg["optim"]["max_steps"] == pre["config"]["optim"]["max_steps"]
        assert cfg["model"]["decoder"] and not cfg["model"]["init_from"]
    assert json.loads((out / "ablations" / "simple-ntp" / "train_config.json").read_text())["config"]["loss"][
        "weighted_ntp"] is False
    # a second run finds every stage done and skips it
    lines.clear()
    Recipe(RecipeConfig.from_yaml(SMOKE), out, log=lines.append).run()
    assert sum("skipping" in line for line in lines) == len(STAGES)


def test_stage_one_starts_from_scratch_without_an_image_phase(tmp_path):
    import yaml

    cfg = RecipeConfig.from_yaml(SMOKE)
    cfg.pretrain_images = {}
    recipe = Recipe(cfg, tmp_path / "run")
    assert recipe.stage_pretrain_images() == {"skipped": True}
    model = yaml.safe_load(recipe._train_yaml("pretrain", {}, tmp_path / "run" / "pretrain").read_text())["model"]
    assert model["decoder"]["dim"] == 64 and model["image_embed_init"].endswith("image") and "init_from" not in model


def test_unknown_recipe_sections_fail_clearly(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("seed: 0\nwrold: {size: smoke}\n")
    with pytest.raises(ConfigError, match="unknown recipe sections"):
        RecipeConfig.from_yaml(bad)
