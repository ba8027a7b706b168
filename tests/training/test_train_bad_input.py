"""Bad input to training (issue #9): diverging runs stop with the last good checkpoint kept and nothing
exported; non-finite, non-numeric, negative and unknown settings are ConfigErrors before training starts;
an empty or file ``out`` is refused; data configs without sources, ``data info`` on synthetic shards, resuming
from damaged checkpoints, malformed YAML through the CLI; every shipped config under configs/ loads."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from training_helpers import run_in_process, tiny_overrides

from aromni.cli.main import main
from aromni.errors import CheckpointError, ConfigError, InputError, TrainingDivergedError
from aromni.training import checkpoint as ckpt
from aromni.training.loop import find_checkpoint
from aromni.training.recipes import pretrain, sft

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
FAST = {"optim.warmup_ratio": 0, "checkpoint.every": 1, "log.progress": False}


def _finite(directory: Path) -> bool:
    state = load_file(str(directory / "model.safetensors"))
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def _one_error_line(err: str) -> str:
    """The error line of a failed command's stderr (progress lines may come before it; no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    return lines[0]


# ----------------------------------------------------------------------------------------------- divergence
def test_a_diverging_run_stops_keeps_the_last_good_checkpoint_and_exports_nothing(synth_dir, tmp_path):
    out = tmp_path / "run"
    run_in_process(tiny_overrides(synth_dir, out, **FAST, **{"optim.max_steps": 2, "export.enabled": False}))
    with pytest.raises(TrainingDivergedError) as e:  # relaunched with an absurd learning rate: resumes at step 2
        run_in_process(tiny_overrides(synth_dir, out, **FAST, **{"optim.lr": 1e10}))
    msg = str(e.value)
    good = out / "checkpoints" / "step-00000003"
    assert f"loss became nan at step 4; the last good checkpoint is {good}; no bundle was exported" in msg
    assert "lower optim.lr (now 1e+10)" in msg
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")][-1] == good.name
    assert all(_finite(p) for p in ckpt.list_checkpoints(out / "checkpoints"))
    assert not (out / "bundle").exists()
    # Relaunching from an earlier checkpoint with a sane learning rate finishes and exports finite weights.
    earlier = out / "checkpoints" / "step-00000002"
    last = run_in_process(tiny_overrides(synth_dir, out, **FAST, **{"optim.max_steps": 4,
                                                                    "checkpoint.resume": str(earlier)}))
    assert last["step"] == 4 and math.isfinite(last["loss"])
    assert _finite(out / "bundle")


def test_weights_that_overflow_are_never_saved(synth_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match="weights stopped being finite numbers at step 1; "
                                                    "no checkpoint was written"):
        run_in_process(tiny_overrides(synth_dir, out, **FAST, **{"optim.lr": 1e38}))
    assert ckpt.list_checkpoints(out / "checkpoints") == [] and not (out / "bundle").exists()


def test_cli_divergence_is_one_error_line(synth_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "pretrain", *tiny_overrides(synth_dir, out, **FAST, **{"optim.lr": 1e10})]
    threads = torch.get_num_threads()
    try:
        assert main(args) == 2
    finally:
        torch.set_num_threads(threads)
    line = _one_error_line(capsys.readouterr().err)
    assert "training diverged: loss became nan at step 2" in line and not (out / "bundle").exists()


def test_the_vqgan_trainer_stops_on_a_nan_loss(tmp_path):
    from aromni.training.recipes.vqgan import VQGANTrainer as Trainer
    from aromni.training.recipes.vqgan_config import VQGANTrainConfig as TrainConfig

    tiny = dict(embed_dim=8, n_embed=32, z_channels=8, resolution=16, ch=8, ch_mult=[1, 2], num_res_blocks=1,
                norm_groups=4)
    cfg = TrainConfig.from_dict(dict(model=tiny, preset="toy", batch_size=4, lr=1e20, warmup_steps=0, steps=6,
                                     log_every=2, eval_every=100, save_every=1, val_images=4, restart_every=0))
    images = torch.randint(0, 256, (20, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(TrainingDivergedError, match="loss became nan at step 2; the last good checkpoint is"):
            Trainer(cfg, images, tmp_path, disable_progress=True).run()
    finally:
        torch.set_num_threads(threads)
    last = find_checkpoint(tmp_path)
    state = torch.load(last / "trainer_state.pt", weights_only=True)
    assert last.name == "step-00000001" and state["step"] == 1 and _finite(last)


def test_the_codec_trainer_stops_on_a_nan_loss(tmp_path):
    from aromni.tokenizers.speech.codec.data import ClipSet
    from aromni.training.recipes.codec import CodecTrainConfig, CodecTrainer

    cfg = CodecTrainConfig(steps=4, lr=1e20, preset="tiny", batch_size=2, segment_frames=8, kmeans_batches=2,
                           kmeans_iters=2, warmup_steps=0, log_every=1, eval_every=100, checkpoint_every=1,
                           val_files=0, threads=1)
    sr = cfg.codec_config().sample_rate
    g = torch.Generator().manual_seed(0)
    clips = [0.3 * torch.sin(torch.arange(sr // 2) * (0.05 + 0.01 * i)) + 0.01 * torch.randn(sr // 2, generator=g)
             for i in range(4)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = CodecTrainer(cfg, ClipSet.from_clips(clips, sr), None, tmp_path, progress=False)
        with pytest.raises(TrainingDivergedError, match="at step 2; the last good checkpoint is .*checkpoints/step-00000001"):
            trainer.run()
    finally:
        torch.set_num_threads(threads)
    last = find_checkpoint(tmp_path)
    assert json.loads((last / "trainer.json").read_text())["step"] == 1
    assert _finite(last) and not (tmp_path / "tokenizer").exists()


def test_the_image_judge_stops_on_a_nan_loss(tmp_path):
    from aromni.training.recipes.judge_image import ImageTrainConfig, train_image_judge

    cfg = ImageTrainConfig(steps=4, batch_size=8, train_images=16, val_images=8, save_every=1, lr=1e30)
    with pytest.raises(TrainingDivergedError, match="training diverged"):
        train_image_judge(tmp_path, cfg, progress=False)
    assert not (tmp_path / "config.json").exists()


# ----------------------------------------------------------------------------------------------- config values
@pytest.mark.parametrize("override, words", [
    ("optim.lr=1e400", ["optim.lr", "finite"]),
    ("optim.lr=.nan", ["optim.lr", "finite"]),
    ("optim.lr=.inf", ["optim.lr", "finite"]),
    ("optim.lr=inf", ["optim.lr", "number"]),
    ("optim.lr=-1", ["optim.lr must be positive", "-1"]),
    ("optim.lr=0", ["optim.lr must be positive"]),
    ("optim.lr=abc", ["optim.lr", "expected a number", "'abc'"]),
    ("optim.max_steps=ten", ["optim.max_steps", "expected an integer", "'ten'"]),
    ("optim.max_steps=-1", ["max_steps", "-1"]),
    ("optim.max_steps=2.5", ["optim.max_steps", "integer", "2.5"]),
    ("optim.betas=[0.9, .nan]", ["optim.betas[1]", "finite"]),
    ("optim.betas=[0.9, 2]", ["optim.betas", "[0, 1)"]),
    ("optim.grad_clip=-1", ["optim.grad_clip", ">= 0"]),
    ("data.micro_batch=0", ["micro_batch", "got"]),
    ("data.seq_len=-5", ["seq_len"]),
    ("data.mixing.ratios={text: abc}", ["data.mixing.ratios.text", "number"]),
    ("model.decoder.dim=-4", ["model.decoder", "dim must be positive", "-4"]),
    ("model.decoder.norm_eps=.nan", ["model.decoder.norm_eps", "finite"]),
    ("model.decoder.bogus=1", ["model.decoder", "bogus"]),
    ("checkpoint.every=-3", ["checkpoint.every", ">= 0"]),
    ("log.progress=1", ["log.progress", "true/false"]),
    ("log.progress=maybe", ["log.progress", "true/false"]),
    ("export.dtype=int8", ["export.dtype", "int8"]),
    ("seed=-1", ["seed", ">= 0"]),
    ("bogus.key=1", ["unknown config keys", "bogus"]),
    ("optim.bogus=1", ["unknown config keys", "optim.bogus"]),
    ("optim=3", ["optim", "mapping"]),
    ("out=", ["out must name a run directory"]),
    ("out=123", ["out", "string"]),
])
def test_bad_settings_are_config_errors_naming_the_key(override, words):
    with pytest.raises(ConfigError) as e:
        pretrain.config(CONFIGS / "train" / "pretrain_tiny.yaml", [override])
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_numeric_strings_yaml_leaves_as_strings_still_work():
    cfg = pretrain.config(None, ["optim.lr=1e-4", "optim.max_steps=1e3", "data.seq_len=64"])
    assert cfg.optim.lr == 1e-4 and cfg.optim.max_steps == 1000 and isinstance(cfg.optim.max_steps, int)


def test_cli_refuses_empty_out_without_touching_the_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "pretrain", "--config", str(CONFIGS / "train" / "pretrain_tiny.yaml"), "out="]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "out must name a run directory" in line
    assert list(tmp_path.iterdir()) == []


def test_out_naming_an_existing_file_is_refused(synth_dir, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    with pytest.raises(ConfigError, match="out must name a run directory, but .*notes.txt is an existing file"):
        run_in_process(tiny_overrides(synth_dir, f))
    assert f.read_text() == "keep me"


@pytest.mark.parametrize("text, words", [
    ("- a\n- b\n", ["top level must be a mapping"]),
    ("optim: {lr: [1,\n", ["invalid YAML"]),
    ("optim: " + "[" * 3000 + "]" * 3000 + "\n", ["nested"]),
    ("optim: {lr: .nan}\n", ["optim.lr", "finite"]),
    ("optim: {lr: 1e400}\n", ["optim.lr", "finite"]),
    ("optim: {max_steps: ten}\n", ["optim.max_steps", "integer"]),
    ("optim: 5\n", ["optim", "mapping"]),
])
def test_cli_malformed_train_yaml_is_one_error_line(tmp_path, capsys, text, words):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    assert main(["train", "pretrain", "--config", str(f), "--print-config"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    for w in words:
        assert w in line, (w, line)


# ----------------------------------------------------------------------------------------------- resume
@pytest.fixture(scope="module")
def finished_run(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    run_in_process(tiny_overrides(synth_dir, out, **{"optim.max_steps": 2, "checkpoint.every": 2,
                                                     "export.enabled": False}))
    return out


def _damage_weights(step: Path) -> None:
    state = load_file(str(step / "model.safetensors"))
    state["norm.weight"] = state["norm.weight"].to(torch.int8)
    save_file(state, str(step / "model.safetensors"))


@pytest.mark.parametrize("damage, words", [
    # Seeded garbage: os.urandom bytes sometimes made the unpickler fail with a KeyError instead (a flaky CI run).
    (lambda s: (s / ckpt.TRAINER_STATE).write_bytes(random.Random(0).randbytes(2000)),
     ["trainer_state.pt", "not a readable PyTorch checkpoint"]),
    (lambda s: torch.save([1, 2, 3], s / ckpt.TRAINER_STATE), ["trainer_state.pt", "not a training state"]),
    (lambda s: torch.save({"step": 2}, s / ckpt.TRAINER_STATE), ["damaged training state", "KeyError"]),
    (lambda s: (s / "model.safetensors").write_bytes(random.Random(1).randbytes(2000)),
     ["model.safetensors", "unreadable"]),
    (lambda s: (s / ckpt.PERCEPTUAL).write_bytes(b"\x08" + b"\0" * 7 + b"{garbage"), ["perceptual.safetensors"]),
    (_damage_weights, ["norm.weight", "int8", "floating-point"]),
])
def test_resuming_from_a_damaged_checkpoint_is_a_checkpoint_error(synth_dir, finished_run, tmp_path, damage, words):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    damage(out / "checkpoints" / "step-00000002")
    with pytest.raises(CheckpointError) as e:
        run_in_process(tiny_overrides(synth_dir, out, **{"optim.max_steps": 3, "export.enabled": False}))
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert "\n" not in str(e.value)


def test_resuming_with_another_model_size_names_the_tensor(synth_dir, finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    bigger = ("{preset: tiny, dim: 48, n_layers: 2, n_heads: 2, n_kv_heads: 2, ffn_dim: 64, max_seq_len: 64}")
    with pytest.raises(CheckpointError, match=r"has shape .* this run expects"):
        run_in_process(tiny_overrides(synth_dir, out, **{"optim.max_steps": 3, "model.decoder": bigger}))


@pytest.mark.parametrize("name, write, words", [
    ("table.pt", lambda f: f.write_bytes(os.urandom(3000)), ["not a readable PyTorch"]),
    ("table.safetensors", lambda f: f.write_bytes(os.urandom(3000)), ["unreadable safetensors file"]),
    ("table.safetensors", lambda f: save_file({"t": torch.ones(8, 3, dtype=torch.int8)}, str(f)),
     ["'t' is stored as torch.int8", "floating-point"]),
])
def test_bad_perceptual_tables_are_checkpoint_errors(tmp_path, name, write, words):
    from aromni.training.perceptual import load_table

    write(tmp_path / name)
    with pytest.raises(CheckpointError) as e:
        load_table(tmp_path / name)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


# ----------------------------------------------------------------------------------------------- data
def test_data_config_without_sources_is_a_config_error(tmp_path, capsys):
    f = tmp_path / "data.yaml"
    f.write_text("out: shards\nlayout: compact\n")
    assert main(["data", "build", "--config", str(f)]) == 2
    assert "data config needs a `sources:` list" in _one_error_line(capsys.readouterr().err)
    f.write_text("layout: compact\nsources: {type: text}\n")
    assert main(["data", "build", "--config", str(f)]) == 2
    assert "must be a list of mappings" in _one_error_line(capsys.readouterr().err)
    f.write_text("layout: compact\nmax_len: lots\nsources: [{type: text, paths: [a.txt]}]\n")
    assert main(["data", "build", "--config", str(f)]) == 2
    assert "max_len: expected an integer" in _one_error_line(capsys.readouterr().err)


def test_a_missing_bundle_in_a_data_config_is_named(tmp_path):
    from aromni.training.data.sources.toolkit import resolve

    with pytest.raises(ConfigError, match="bundles/nope is not a bundle directory"):
        resolve({"bundle": "bundles/nope"}, tmp_path)


def test_data_info_describes_what_synth_data_writes(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["train", "synth-data", "--out", str(out), "--n-train", "20", "--n-val", "5"]) == 0
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "train: 20 samples" in text and "validation: 5 samples" in text
    assert "tasks: asr 4" in text and "groups:" in text and "tokens" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["tasks"]["caption"]["rows"] == 4
    # A manifest that counts rows only (older synthetic corpora) is still described.
    manifest["splits"] = {"train": {"rows": 20}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(["data", "info", str(out)]) == 0
    assert "train: 20 samples in ? shard(s)" in capsys.readouterr().out
    # A directory that is not a shard set is a clean error.
    assert main(["data", "info", str(tmp_path)]) == 2
    assert "no manifest.json" in _one_error_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------------------------- shipped configs
@pytest.mark.parametrize("path", sorted((CONFIGS / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_every_train_config_loads(path):
    recipe = sft if path.name.startswith("sft") else pretrain
    cfg = recipe.config(path)
    assert cfg.out and cfg.optim.lr > 0


@pytest.mark.parametrize("path", sorted((CONFIGS / "data").glob("*.yaml")), ids=lambda p: p.name)
def test_every_data_config_loads_and_names_known_sources(path):
    from aromni.training.data.build import BuildConfig
    from aromni.training.data.sources import SOURCE_TYPES

    cfg = BuildConfig.load(path)
    assert cfg.sources and all(s["type"] in SOURCE_TYPES for s in cfg.sources)


def test_the_example_data_config_points_at_a_bundle_that_exists():
    from aromni.training.data.build import BuildConfig
    from aromni.training.data.sources.toolkit import load_toolkit

    cfg = BuildConfig.load(CONFIGS / "data" / "example.yaml")
    kit = load_toolkit({"bundle": cfg.bundle, "tokenizers": cfg.tokenizers, "layout": cfg.layout,
                        "style": cfg.style}, cfg.base)
    assert all(kit.tokenizer(m) is not None for m in ("text", "image", "speech"))


@pytest.mark.parametrize("path", sorted((CONFIGS / "toyworld").glob("*.yaml")), ids=lambda p: p.name)
def test_every_toyworld_config_loads_with_valid_stage_settings(path, tmp_path):
    from aromni.models.config import DecoderConfig
    from aromni.toyworld.recipe import Recipe, RecipeConfig
    from aromni.training.recipes.codec_config import CodecTrainConfig
    from aromni.training.recipes.vqgan_config import VQGANTrainConfig

    cfg = RecipeConfig.from_yaml(path)
    VQGANTrainConfig.from_dict(cfg.image)
    CodecTrainConfig.from_dict(cfg.speech)
    model = dict(cfg.model)
    DecoderConfig.preset(model.pop("preset", "tiny"), **{"vocab_size": 640, **model})
    recipe = Recipe(cfg, tmp_path, log=lambda line: None)
    pretrain.config(recipe._train_yaml("pretrain", {}, tmp_path / "p"))
    sft.config(recipe._train_yaml("sft", {}, tmp_path / "s"))
    for name, overrides in cfg.ablations.items():
        pretrain.config(recipe._train_yaml("pretrain", overrides, tmp_path / name, name=name))


def test_missing_config_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such config file"):
        pretrain.config(tmp_path / "nope.yaml")
