"""The OmniVIVO speech stage on the loop core, end to end on tiny components the tests build: training lowers the
loss on a memorisable set, the backbone and conditioner stay bit-identical, checkpoints hold only the trainable
tensors, an interrupted and resumed run equals an uninterrupted one bit for bit (weights, optimizer, losses,
average, export) without re-encoding the audio, the exported average is the hand-computed mean of the scheduled
checkpoints, and the export reloads (also moved elsewhere) to identical speech logits while a changed referenced
component is refused."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aromni.errors import CheckpointError, ConfigError
from aromni.omnivivo.lora import backbone_state_dict
from aromni.omnivivo.t2i_checkpoint import load_t2i, save_t2i
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone
from aromni.omnivivo.toy_conditioner import ToyTextConditioner, ToyTextConfig
from aromni.tokenizers.speech.audio_io import save_wav
from aromni.tokenizers.speech.codec import CodecConfig, StreamingCodec
from aromni.tokenizers.text import TextTokenizer
from aromni.training.checkpoint import CHECKPOINTS
from aromni.training.recipes.omnivivo import (
    AVERAGE_FILE,
    EXPORT_DIR,
    VivoTrainer,
    export_vivo,
    load_vivo,
    train_omnivivo,
    trainable_view,
)
from aromni.training.recipes.omnivivo_config import VivoTrainConfig

TRAIN = [("a low hum", 220.0, 0.30), ("a high beep", 880.0, 0.20), ("a middle tone", 440.0, 0.25),
         ("two quick notes", 660.0, 0.35)]
VAL = [("a low beep", 330.0, 0.2), ("a high hum", 770.0, 0.3)]
SR = 16000


def _write_manifest(root: Path, name: str, rows: list[tuple[str, float, float]]) -> Path:
    lines = []
    for i, (text, freq, seconds) in enumerate(rows):
        t = np.arange(int(seconds * SR)) / SR
        save_wav(root / "audio" / f"{name}{i}.wav", 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32), SR)
        lines.append(json.dumps({"text": text, "audio": f"audio/{name}{i}.wav", "speaker": "tone"}))
    (root / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return root / f"{name}.jsonl"


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    """A toy t2i backbone (save_t2i), a toy conditioner, the tiny speech codec and two manifests of sine tones."""
    root = tmp_path_factory.mktemp("vivo_parts")
    (root / "audio").mkdir()
    torch.manual_seed(0)
    backbone = T2IBackbone(T2IConfig.preset("toy", n_layer=2, block_size=16)).eval()
    backbone.init_weights(zero_output=False)
    save_t2i(backbone, root / "backbone")
    corpus = [t for t, _, _ in TRAIN + VAL] * 4
    tok = TextTokenizer.train(corpus, vocab_size=300, special_tokens=["<pad>"], min_frequency=1)
    ToyTextConditioner(ToyTextConfig(vocab_size=tok.vocab_size, n_layer=1, ffn_dim=128), tok).save_pretrained(
        root / "conditioner")
    StreamingCodec(CodecConfig.preset("tiny")).eval().save_pretrained(root / "codec")
    return {"backbone": root / "backbone", "conditioner": root / "conditioner", "speech_tokenizer": root / "codec",
            "train_manifest": _write_manifest(root, "train", TRAIN), "val_manifest": _write_manifest(root, "val", VAL)}


def _cfg(parts: dict[str, Path], **changes: object) -> VivoTrainConfig:
    settings = {**{k: str(v) for k, v in parts.items()},
                "vivo": {"branch_layers": 1, "max_speech_len": 32, "lora": {"r": 4, "alpha": 4.0}},
                "steps": 6, "batch_size": 3, "lr": 3e-3, "log_every": 1, "eval_every": 3, "save_every": 2,
                "keep_last": 0, "average_last": 3, **changes}
    return VivoTrainConfig.from_dict(settings).resolved()


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(out / CHECKPOINTS / f"step-{step:08d}" / "model.safetensors"))


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def finished(parts, tmp_path_factory) -> tuple[VivoTrainer, Path]:
    """An uninterrupted 6-step run (dropouts on, so the RNG matters), averaged and exported."""
    out = tmp_path_factory.mktemp("run_full")
    cfg = _cfg(parts, vivo={"branch_layers": 1, "max_speech_len": 32, "branch_dropout": 0.1,
                            "lora": {"r": 4, "alpha": 4.0, "dropout": 0.1}})
    trainer = VivoTrainer(cfg, out, progress=False)
    summary = trainer.run()
    assert summary["done"] and summary["averaged"] == [f"step-{s:08d}" for s in (2, 4, 6)]
    return trainer, out


def test_the_trainable_view_shares_exactly_the_trainable_tensors():
    lin = torch.nn.Linear
    model = torch.nn.Sequential(lin(2, 3), torch.nn.Sequential(lin(3, 3), lin(3, 1)))
    model[0].requires_grad_(False)
    model[1][1].requires_grad_(False)
    view = trainable_view(model)
    assert set(view.state_dict()) == {"1.0.weight", "1.0.bias"}
    assert view.get_submodule("1.0") is model[1][0]  # shared, not copied: loading the view loads the model
    view.load_state_dict({"1.0.weight": torch.ones(3, 3), "1.0.bias": torch.zeros(3)})
    assert torch.equal(model[1][0].weight, torch.ones(3, 3))
    whole = torch.nn.Linear(2, 2)
    assert trainable_view(whole) is whole  # everything trains: the model itself
    model[0].bias.requires_grad_(True)  # a trainable bias beside a frozen weight cannot be placed
    with pytest.raises(ConfigError, match="'0' holds trainable and frozen parameters"):
        trainable_view(model)


def test_training_lowers_the_loss_and_freezes_backbone_and_conditioner(parts, tmp_path):
    cfg = _cfg(parts, steps=30, batch_size=4, save_every=10, average_last=1, eval_every=30)
    trainer = VivoTrainer(cfg, tmp_path / "run", progress=False)
    cond_before = {k: v.clone() for k, v in trainer.components.conditioner.state_dict().items()}
    trainer.run()
    losses = [r["loss"] for r in _records(tmp_path / "run") if "loss" in r]
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    assert losses[0] > math.log(1025) - 1.0  # starts near chance over K + 1 = 1025 ids
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0]  # four utterances memorised well below chance
    evals = [r for r in _records(tmp_path / "run") if r.get("kind") == "eval"]
    assert len(evals) == 1 and math.isfinite(evals[0]["val_loss"]) and evals[0]["val_tokens"] > 0
    fresh = load_t2i(parts["backbone"]).state_dict()
    assert _equal(backbone_state_dict(trainer.model.backbone), fresh)  # bit-identical after 30 updates
    assert _equal(trainer.components.conditioner.state_dict(), cond_before)
    assert not trainer.model.backbone.training and not trainer.components.conditioner.training
    # the checkpoint holds exactly the trainable tensors (LoRA + speech modules), nothing frozen
    trainable = {f"vivo.{n}" for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert set(_weights(tmp_path / "run", 30)) == trainable
    assert any(".lora_A." in k for k in trainable) and "vivo.branch.head.weight" in trainable


def test_resume_is_bit_identical_and_reuses_the_code_cache(parts, finished, tmp_path, monkeypatch):
    trainer_a, out_a = finished
    out_b = tmp_path / "run_b"
    cfg = VivoTrainConfig.from_dict(trainer_a.cfg.to_dict())
    first = train_omnivivo(cfg, out_b, progress=False, until=3)  # interrupted after step 3
    assert first["step"] == 3 and not first["done"] and not (out_b / EXPORT_DIR).exists()
    cache = out_b / "speech_codes" / "train.safetensors"
    stamp = cache.stat().st_mtime_ns

    def no_encoding(*args, **kwargs):
        raise AssertionError("a resumed run must read the cached codes")

    monkeypatch.setattr(StreamingCodec, "encode", no_encoding)
    second = train_omnivivo(cfg, out_b, resume=True, progress=False)
    assert second["done"] and cache.stat().st_mtime_ns == stamp
    assert _equal(_weights(out_a, 6), _weights(out_b, 6))
    state_a = torch.load(out_a / CHECKPOINTS / "step-00000006" / "trainer_state.pt", weights_only=True)
    state_b = torch.load(out_b / CHECKPOINTS / "step-00000006" / "trainer_state.pt", weights_only=True)
    exp_a, exp_b = state_a["optimizers"]["opt"]["state"], state_b["optimizers"]["opt"]["state"]
    assert exp_a.keys() == exp_b.keys() and all(_equal(exp_a[i], exp_b[i]) for i in exp_a)
    assert [r.get("loss") for r in _records(out_a)] == [r.get("loss") for r in _records(out_b)]
    assert second["averaged"] == [f"step-{s:08d}" for s in (2, 4, 6)]  # not the interruption's step 3
    assert _equal(load_file(str(out_a / AVERAGE_FILE)), load_file(str(out_b / AVERAGE_FILE)))
    for name in ("speech.safetensors", "adapter/adapter_model.safetensors"):
        assert _equal(load_file(str(out_a / EXPORT_DIR / name)), load_file(str(out_b / EXPORT_DIR / name)))


def test_the_export_is_the_mean_of_the_last_scheduled_checkpoints(finished):
    trainer, out = finished
    ckpts = [_weights(out, s) for s in (2, 4, 6)]
    average = load_file(str(out / AVERAGE_FILE))
    assert average.keys() == ckpts[0].keys()
    for k, v in average.items():
        hand = (ckpts[0][k].double() + ckpts[1][k].double() + ckpts[2][k].double()) / 3
        torch.testing.assert_close(v, hand.float(), rtol=0, atol=1e-7)
        assert not torch.equal(ckpts[0][k], ckpts[2][k])  # the checkpoints differ: the mean is not trivial
    model_state = {f"vivo.{n}": p.detach() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert _equal(model_state, average)  # the in-memory model holds the average it exported


def _logits(model, conditioner, texts, codes):
    with torch.no_grad():
        feats, mask = conditioner.encode(texts)
        return model.eval().speech_logits(feats, mask, codes)


def test_export_reloads_to_identical_speech_logits_even_moved(finished, tmp_path):
    trainer, out = finished
    texts, codes, _ = trainer.train_set.batch([0, 1, 2, 3])
    want = _logits(trainer.model, trainer.components.conditioner, texts, codes)
    moved = tmp_path / "elsewhere"
    shutil.copytree(out / EXPORT_DIR, moved)  # small components were copied in: the export is self-contained
    for path in (out / EXPORT_DIR, moved):
        loaded = load_vivo(path)
        assert loaded.config["backbone"]["copied"] and loaded.speech_tokenizer.codebook_size == 1024
        assert torch.equal(_logits(loaded.model, loaded.conditioner, texts, codes), want)
    adapter = json.loads((moved / "adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 4 and adapter["lora_alpha"] == 4


def test_referenced_components_are_checked_on_load(finished, parts, tmp_path):
    trainer, _ = finished
    backbone = tmp_path / "backbone"
    shutil.copytree(parts["backbone"], backbone)
    cfg = VivoTrainConfig.from_dict({**trainer.cfg.to_dict(), "backbone": str(backbone), "export_copy_max_mb": 0})
    path = export_vivo(trainer.model, tmp_path / "export", cfg, trainer.components, training={})
    config = json.loads((path / "config.json").read_text())
    assert not config["backbone"]["copied"] and config["backbone"]["path"] == str(backbone)
    assert not (path / "backbone").exists()
    texts, codes, _ = trainer.train_set.batch([1, 2])
    loaded = load_vivo(path)
    assert torch.equal(_logits(loaded.model, loaded.conditioner, texts, codes),
                       _logits(trainer.model, trainer.components.conditioner, texts, codes))
    with pytest.raises(Exception, match="already exists"):
        export_vivo(trainer.model, path, cfg, trainer.components, training={})  # never over an export
    damaged = tmp_path / "damaged"
    shutil.copytree(path, damaged)
    (damaged / "config.json").write_text(json.dumps({**config, "type": "llamagen-t2i"}))
    with pytest.raises(CheckpointError, match="not an omnivivo export"):
        load_vivo(damaged)
    (damaged / "config.json").write_text(json.dumps(config))
    (damaged / "speech.safetensors").unlink()
    with pytest.raises(CheckpointError, match="speech.safetensors"):
        load_vivo(damaged)
    (backbone / "model.safetensors").write_bytes(b"x" * 10)  # another backbone at the referenced path
    with pytest.raises(CheckpointError, match="is not the one it was trained with"):
        load_vivo(path)
    shutil.rmtree(backbone)
    with pytest.raises(CheckpointError, match="backbone it was trained with is missing"):
        load_vivo(path)


def test_without_lora_only_the_branch_trains_and_the_export_reloads(parts, tmp_path):
    """``vivo.lora: null`` is the paper's Table 1 "w/o LoRA" baseline: no adapters anywhere, the branch alone
    trains on the frozen backbone's states, and the export (no adapter/) reloads to identical logits."""
    cfg = _cfg(parts, vivo={"branch_layers": 1, "max_speech_len": 32, "lora": None}, steps=4, save_every=2,
               average_last=2, eval_every=4)
    trainer = VivoTrainer(cfg, tmp_path / "run", progress=False)
    trainer.run()
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("branch.") for n in trainable)
    assert not any("lora" in n for n, _ in trainer.model.named_parameters())
    fresh = load_t2i(parts["backbone"]).state_dict()
    assert _equal(trainer.model.backbone.state_dict(), fresh)  # no adapters: the backbone is the file itself
    export = tmp_path / "run" / EXPORT_DIR
    assert not (export / "adapter").exists()
    assert json.loads((export / "config.json").read_text())["vivo"]["lora"] is None
    texts, codes, _ = trainer.train_set.batch([0, 1, 2])
    want = _logits(trainer.model, trainer.components.conditioner, texts, codes)
    loaded = load_vivo(export)
    assert loaded.model.lora_targets == [] and torch.equal(_logits(loaded.model, loaded.conditioner, texts, codes),
                                                           want)
