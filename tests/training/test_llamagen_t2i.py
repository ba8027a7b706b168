"""The LlamaGen text-to-image recipe on the loop core: (caption, image) pairs from a toy world's records or a
manifest, image codes encoded once and cached, the backbone and a jointly trained toy text conditioner learning a
tiny memorisable set, a bit-identical resume that never re-encodes, exports that reload and generate identically,
the caption CFG drop in training steps only, judge-scored generation at evaluation, and clear errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.omnivivo.t2i_checkpoint import load_t2i
from aromni.omnivivo.t2i_generate import generate_images
from aromni.omnivivo.toy_conditioner import ToyTextConditioner
from aromni.tokenizers.image.llamagen_vq import LlamaGenVQ
from aromni.tokenizers.image.llamagen_vq_config import LlamaGenVQConfig
from aromni.toyworld.attributes import ImageAttrs
from aromni.toyworld.images import random_spec, render
from aromni.training.recipes.llamagen_t2i import LlamaGenT2ITrainer
from aromni.training.recipes.llamagen_t2i_config import LlamaGenT2ITrainConfig, resume_t2i_config
from aromni.training.recipes.llamagen_t2i_data import manifest_pairs, world_pairs
from aromni.vocab.tasks import ASR, CAPTION, T2I

# LlamaGen-architecture VQs small enough for CPU tests: 16 px -> 4x4 codes, and 64 px (the judge's size) -> 4x4.
VQ16 = {"ch": 32, "encoder_ch_mult": [1, 1, 2], "decoder_ch_mult": [1, 1, 2], "z_channels": 32,
        "num_res_blocks": 1, "codebook_size": 32, "image_size": 16}
VQ64 = {**VQ16, "encoder_ch_mult": [1, 1, 1, 1, 2], "decoder_ch_mult": [1, 1, 1, 1, 2], "image_size": 64}
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 230), "yellow": (240, 220, 40)}
ATTRS = [("circle", "red", "big", "top left", "white"), ("square", "blue", "small", "middle", "black"),
         ("star", "green", "big", "bottom right", "gray"), ("cross", "yellow", "small", "top right", "beige")]


def _vq(path: Path, arch: dict[str, object]) -> Path:
    torch.manual_seed(0)
    LlamaGenVQ(LlamaGenVQConfig.preset("toy", **arch)).save_pretrained(path)
    return path


def _manifest(root: Path, n: int = 4) -> Path:
    """``n`` 16-px PNGs (a square of one colour each) and a manifest ``m.jsonl`` captioning them."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, rgb) in enumerate(list(COLOURS.items())[:n]):
        a = np.full((16, 16, 3), 90, np.uint8)
        a[4:12, 4:12] = rgb
        Image.fromarray(a).save(root / f"{name}.png")
        rows.append({"text": f"a {name} square", "image": f"{name}.png"})
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "m.jsonl"


def _record(split: str, i: int, task: str, image: str, attrs: tuple[str, ...], text: str) -> dict[str, object]:
    meta = {"image": dict(zip(("shape", "color", "size", "position", "background"), attrs))}
    if task == CAPTION.name:
        turns = [{"role": "user", "segments": [{"type": "text", "text": CAPTION.paper_instruction},
                                               {"type": "image", "path": image}]},
                 {"role": "assistant", "segments": [{"type": "text", "text": text}]}]
    elif task == T2I.name:
        turns = [{"role": "user", "segments": [{"type": "text", "text": f"{T2I.paper_instruction} {text}"}]},
                 {"role": "assistant", "segments": [{"type": "image", "path": image}]}]
    else:  # a record of another task, which the recipe must skip
        turns = [{"role": "user", "segments": [{"type": "text", "text": "hello"}]},
                 {"role": "assistant", "segments": [{"type": "text", "text": text}]}]
    return {"id": f"{split}-{task}-{i}", "task": task, "split": split, "turns": turns, "meta": meta}


def _world(root: Path) -> Path:
    """A miniature toy world: rendered 64-px images and caption / t2i / asr records in train and validation."""
    rng = random.Random(0)
    for split, rows in (("train", ATTRS), ("validation", ATTRS[:3])):
        (root / "images" / split).mkdir(parents=True)
        records = []
        for i, attrs in enumerate(rows):
            image = f"images/{split}/{i:05d}.png"
            render(random_spec(ImageAttrs(*attrs), rng)).save(root / image)
            text = f"a {attrs[2]} {attrs[1]} {attrs[0]} at the {attrs[3]} on {attrs[4]}"
            records.append(_record(split, i, T2I.name if i % 2 else CAPTION.name, image, attrs, text))
            records.append(_record(split, i, ASR.name, image, attrs, "not a caption"))
        (root / "records").mkdir(exist_ok=True)
        (root / "records" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def _cfg(**changes: object) -> LlamaGenT2ITrainConfig:
    base = {"model": {"n_layer": 2}, "text_layers": 1, "text_vocab_size": 300, "steps": 6, "batch_size": 4,
            "warmup_steps": 2, "log_every": 2, "eval_every": 3, "save_every": 2, "lr": 3e-3}
    return LlamaGenT2ITrainConfig.from_dict({**base, **changes})


@pytest.fixture(scope="module")
def data16(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("t2i16")
    return str(_manifest(root / "data")), str(_vq(root / "vq", VQ16))


def _bits(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def test_world_records_give_caption_image_pairs(tmp_path):
    world = _world(tmp_path / "w")
    pairs = world_pairs(world, "train")
    assert len(pairs) == len(ATTRS)  # the asr records are skipped
    for i, (pair, attrs) in enumerate(zip(pairs, ATTRS)):
        assert pair.text == f"a {attrs[2]} {attrs[1]} {attrs[0]} at the {attrs[3]} on {attrs[4]}"  # no instruction
        assert pair.image == world / "images" / "train" / f"{i:05d}.png" and pair.image.is_file()
        assert pair.attrs == dict(zip(("shape", "color", "size", "position", "background"), attrs))
    (world / "records" / "test.jsonl").write_text(json.dumps(_record("test", 0, ASR.name, "x.png", ATTRS[0], "hi")))
    with pytest.raises(InputError, match=f"no {CAPTION.name} or {T2I.name} records"):
        world_pairs(world, "test")


@pytest.mark.parametrize("line, message", [
    ('{"text": "a"}', 'string fields "text" and "image"'),
    ('[1, 2]', 'string fields "text" and "image"'),
    ('{"text": "a", "image": "a.png", "attrs": {"shape": "circle"}}', '"attrs" must give the 5 attributes'),
    ('{"text": "a", "image": ', "m.jsonl:1"),
    ("", "the manifest is empty"),
])
def test_bad_manifest_lines_are_named(tmp_path, line, message):
    (tmp_path / "m.jsonl").write_text(line + "\n")
    with pytest.raises(InputError) as e:
        manifest_pairs(tmp_path / "m.jsonl")
    assert message in str(e.value)


def test_loss_goes_down_on_a_memorisable_set(tmp_path, data16):
    manifest, vq = data16
    trainer = LlamaGenT2ITrainer(_cfg(manifest=manifest, vq=vq, steps=60, eval_every=60), tmp_path, progress=False)
    before = trainer.recipe.evaluate(0)["val_loss"]
    logs = [trainer.loop.train_step()["loss"] for _ in range(60)]
    after = trainer.recipe.evaluate(60)["val_loss"]
    assert before == pytest.approx(np.log(32), rel=1e-3)  # LlamaGen's zero output head: uniform at the start
    assert after < 0.5 * before and sum(logs[-10:]) < 0.5 * sum(logs[:10]), (before, after)


def test_resume_is_bit_identical_and_never_re_encodes(tmp_path, data16, monkeypatch):
    manifest, vq = data16
    cfg = _cfg(manifest=manifest, vq=vq)
    whole = LlamaGenT2ITrainer(cfg, tmp_path / "whole", progress=False).run()
    LlamaGenT2ITrainer(cfg, tmp_path / "cut", progress=False).run(until=3)
    cache = tmp_path / "cut" / "cache" / "codes.safetensors"
    stamp = (cache.stat().st_mtime_ns, cache.stat().st_ino)

    def no_encoding(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("a resumed run encoded images again")

    monkeypatch.setattr(LlamaGenVQ, "quantize_images", no_encoding)
    resumed = LlamaGenT2ITrainer(cfg, tmp_path / "cut", progress=False).run()
    assert (cache.stat().st_mtime_ns, cache.stat().st_ino) == stamp
    assert resumed["done"] and resumed["last_eval"] == whole["last_eval"]
    for name in ("backbone", "text", "checkpoints/step-00000006"):
        a, b = _bits(tmp_path / "whole" / name), _bits(tmp_path / "cut" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert any(k.startswith("text.") for k in _bits(tmp_path / "cut" / "checkpoints/step-00000006"))


def test_exports_reload_and_generate_identically(tmp_path, data16):
    manifest, vq = data16
    trainer = LlamaGenT2ITrainer(_cfg(manifest=manifest, vq=vq, steps=3), tmp_path, progress=False)
    summary = trainer.run()
    backbone, text = load_t2i(summary["backbone"]), ToyTextConditioner.from_pretrained(summary["text"])
    assert backbone.cfg.vocab_size == 32 and backbone.cfg.block_size == 16
    captions = ["a red square", "a blue square"]
    with torch.no_grad():
        feats, mask = text.encode(captions)
        ref_feats, ref_mask = trainer.text.eval().encode(captions)
    assert torch.equal(feats, ref_feats) and torch.equal(mask, ref_mask)
    kw = {"cfg_scale": 2.0, "top_k": 0, "seed": 7, "progress": False}
    codes = generate_images(backbone, feats, mask, **kw)
    assert torch.equal(codes, generate_images(trainer.model, ref_feats, ref_mask, **kw))
    assert codes.shape == (2, 16) and int(codes.max()) < 32


def test_caption_drop_fires_in_training_steps_only(tmp_path):
    world = _world(tmp_path / "w")
    vq = _vq(tmp_path / "vq", VQ64)
    trainer = LlamaGenT2ITrainer(_cfg(world=str(world), vq=str(vq), judge_images=2, model={
        "n_layer": 2, "class_dropout_prob": 0.5}), tmp_path / "run", progress=False)
    seen: list[bool] = []
    trainer.model.cls_embedding.register_forward_pre_hook(lambda module, args: seen.append(bool(args[1])))
    for _ in range(3):
        trainer.loop.train_step()
    assert seen == [True] * 3
    seen.clear()
    record = trainer.recipe.evaluate(3)  # validation loss and judge-scored generation
    assert seen and not any(seen)
    assert record["split"] == "val" and record["pairs"] == 3 and record["val_loss"] > 0
    assert set(record) >= {"judge_shape", "judge_color", "judge_all"} and 0.0 <= record["judge_all"] <= 1.0
    assert trainer.model.training and trainer.text.training  # evaluation restores the training modes
    # The drop itself: with p = 0.5 some rows of a batch see the null caption, so two draws differ.
    codes = trainer.recipe.train_set.codes[:4]
    ids, mask = trainer.recipe.train_set.ids[:4], trainer.recipe.train_set.mask[:4]
    trainer.model.eval()
    with torch.no_grad():
        losses = {float(trainer.recipe.loss(ids, mask, codes, train=True)) for _ in range(6)}
        plain = {float(trainer.recipe.loss(ids, mask, codes, train=False)) for _ in range(3)}
    assert len(losses) > 1 and len(plain) == 1


def test_a_given_conditioner_stays_frozen(tmp_path, data16):
    manifest, vq = data16
    first = LlamaGenT2ITrainer(_cfg(manifest=manifest, vq=vq, steps=2), tmp_path / "a", progress=False).run()
    cfg = _cfg(manifest=manifest, vq=vq, steps=3, text_conditioner=first["text"], train_text=False)
    LlamaGenT2ITrainer(cfg, tmp_path / "b", progress=False).run()
    before, after = _bits(Path(first["text"])), _bits(tmp_path / "b" / "text")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(k.startswith("text.") for k in _bits(tmp_path / "b" / "checkpoints" / "step-00000003"))


@pytest.mark.parametrize("changes, message", [
    ({}, "give exactly one of world and manifest"),
    ({"world": "w", "manifest": "m.jsonl"}, "give exactly one of world and manifest"),
    ({"world": "w", "vq": ""}, "vq is not set"),
    ({"world": "w", "val_manifest": "v.jsonl"}, "val_manifest needs manifest"),
    ({"world": "w", "model": {"vocab_size": 64}}, "vocab_size comes from the VQ"),
    ({"world": "w", "model": {"n_head": 3}}, "not divisible by n_head"),
    ({"world": "w", "cfg_scale": -1.0}, "cfg_scale must be a finite number >= 0"),
    ({"world": "w", "weight_decay": float("nan")}, "weight_decay"),
    ({"world": "w", "texts": "x"}, "unknown keys"),
])
def test_bad_settings_are_refused_with_one_clear_error(changes, message):
    with pytest.raises(ConfigError) as e:
        _cfg(**{"vq": "vq", **changes})
    assert message in str(e.value)


def test_bad_inputs_are_refused_with_one_clear_error(tmp_path, data16):
    manifest, vq = data16
    with pytest.raises(CheckpointError, match="no such tokenizer directory"):
        LlamaGenT2ITrainer(_cfg(manifest=manifest, vq=str(tmp_path / "nowhere")), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="judge_images needs validation pairs with image attributes"):
        LlamaGenT2ITrainer(_cfg(manifest=manifest, vq=vq, judge_images=2), tmp_path / "b", progress=False)
    with pytest.raises(ConfigError, match="model.cls_token_num=16 model.caption_dim=64"):
        LlamaGenT2ITrainer(_cfg(manifest=manifest, vq=vq, model={"n_layer": 2, "caption_dim": 32},
                                text_conditioner=str(_text_dir(tmp_path, manifest, vq))), tmp_path / "c", progress=False)
    other_vq = _vq(tmp_path / "vq2", {**VQ16, "codebook_size": 64})
    with pytest.raises(ConfigError, match="cached codes come from another VQ"):
        LlamaGenT2ITrainer(_cfg(manifest=manifest, vq=str(other_vq)), tmp_path / "d", progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "a", "image": "missing.png"}) + "\n")
    with pytest.raises(InputError, match="missing.png: no such image file"):
        LlamaGenT2ITrainer(_cfg(manifest=str(bad), vq=vq), tmp_path / "e", progress=False)
    with pytest.raises(ConfigError, match=r"cannot change \['vq'\] when resuming"):
        resume_t2i_config(tmp_path / "d", ["steps=9", "vq=x"])
    assert resume_t2i_config(tmp_path / "d", ["steps=9"]).steps == 9


def _text_dir(tmp_path: Path, manifest: str, vq: str) -> Path:
    """A run directory whose cache holds codes of ``vq`` and a saved text conditioner (of width 64)."""
    LlamaGenT2ITrainer(_cfg(manifest=manifest, vq=vq, steps=1), tmp_path / "d", progress=False).run()
    return tmp_path / "d" / "text"
