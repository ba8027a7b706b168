"""Loading LlamaGen t2i checkpoints in every official layout (written here, tiny), refusing foreign pickled
objects and wrong keys, and the round trip through our own directory format."""

from __future__ import annotations

import argparse
import json
import pickle
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from aromni.errors import CheckpointError, InputError
from aromni.omnivivo.t2i_checkpoint import (
    infer_config,
    load_backbone,
    load_official,
    load_t2i,
    read_official,
    save_t2i,
)
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone

CFG = T2IConfig.preset("toy")


def _model() -> T2IBackbone:
    torch.manual_seed(0)
    model = T2IBackbone(CFG).eval()
    model.init_weights(zero_output=False)
    return model


def _train_t2i_checkpoint(model: T2IBackbone) -> dict[str, object]:
    """What LlamaGen's train_t2i.py saves: weights, AdamW state after one step, the step count and its args."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=5e-2, betas=(0.9, 0.95))
    feats = torch.randn(2, CFG.cls_token_num, CFG.caption_dim)
    codes = torch.randint(0, CFG.vocab_size, (2, 8))
    model(feats, codes).sum().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    args = argparse.Namespace(gpt_model="GPT-B", gpt_type="t2i", image_size=64, downsample_size=8,
                              cls_token_num=CFG.cls_token_num, vocab_size=CFG.vocab_size, dropout_p=0.1,
                              lr=1e-4, mixed_precision="bf16", gpt_ckpt=None, no_compile=False)
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "steps": 5000, "args": args}


def _assert_same_weights(loaded: T2IBackbone, model: T2IBackbone) -> None:
    ref = model.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(ref) and len(got) == 34
    for k, v in ref.items():
        assert torch.equal(got[k], v), k


@pytest.mark.parametrize("wrap", ["plain", "model", "module", "state_dict"])
def test_official_layouts_load_every_key(tmp_path: Path, wrap: str):
    model = _model()
    sd = model.state_dict()
    path = tmp_path / "gpt.pt"
    torch.save(sd if wrap == "plain" else {wrap: sd}, path)
    loaded = load_official(path, block_size=CFG.block_size)
    assert not loaded.training and loaded.cfg == CFG
    _assert_same_weights(loaded, model)
    feats = torch.randn(1, CFG.cls_token_num, CFG.caption_dim)
    codes = torch.randint(0, CFG.vocab_size, (1, 5))
    with torch.no_grad():
        torch.testing.assert_close(loaded(feats, codes), model(feats, codes), rtol=0, atol=0)


def test_train_t2i_checkpoint_with_args_and_optimizer_loads(tmp_path: Path):
    model = _model()
    path = tmp_path / "0005000.pt"
    torch.save(_train_t2i_checkpoint(model), path)
    # weights_only refuses the Namespace on its own: this is the file shape omnivivo.md §1.7 warns about.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    state, args = read_official(path)
    assert len(state) == 34  # the weights only: no optimizer, steps or args entries
    assert args["image_size"] == 64 and args["gpt_model"] == "GPT-B" and args["gpt_ckpt"] is None
    loaded = load_official(path)  # block_size from args: (64 // 8) ** 2; heads from the shapes' preset
    assert loaded.cfg == CFG
    _assert_same_weights(loaded, model)
    # The allow-list was scoped to the call: a plain weights-only load still refuses the Namespace.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_foreign_pickled_objects_are_refused(tmp_path: Path):
    sd = _model().state_dict()
    path = tmp_path / "evil.pt"
    torch.save({"model": sd, "note": Fraction(1, 3)}, path)
    with pytest.raises(CheckpointError, match="arbitrary pickled Python objects"):
        load_official(path, block_size=CFG.block_size)
    # A foreign object hidden inside the Namespace is refused as well: only the Namespace class is allowed.
    torch.save({"model": sd, "args": argparse.Namespace(image_size=Fraction(64), downsample_size=8)}, path)
    with pytest.raises(CheckpointError, match="arbitrary pickled Python objects"):
        load_official(path, block_size=CFG.block_size)


def test_wrong_keys_and_shapes_are_named(tmp_path: Path):
    sd = _model().state_dict()
    path = tmp_path / "gpt.pt"
    torch.save({"model": {k: v for k, v in sd.items() if k != "layers.2.ffn_norm.weight"}}, path)
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\) \(first 'layers.2.ffn_norm.weight'\)"):
        load_official(path, block_size=CFG.block_size)
    torch.save({"model": {**sd, "layers.0.attention.lora_A.weight": torch.zeros(4, 128)}}, path)
    with pytest.raises(CheckpointError, match="unexpected key.*lora_A"):
        load_official(path, block_size=CFG.block_size)
    torch.save({"model": {**sd, "layers.1.feed_forward.w1.weight": torch.zeros(256, 128)}}, path)
    with pytest.raises(CheckpointError, match="w1.weight has shape"):
        load_official(path, block_size=CFG.block_size)
    torch.save({"optimizer": {}, "steps": 3}, path)
    with pytest.raises(CheckpointError, match="no state dict found"):
        load_official(path, block_size=CFG.block_size)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_official(path, block_size=CFG.block_size)


def test_runtime_leftovers_are_dropped_and_the_grid_must_be_known(tmp_path: Path):
    model = _model()
    sd = dict(model.state_dict())
    for i in range(CFG.n_layer):  # an upstream model saved after generate() carries its KV caches
        sd[f"layers.{i}.attention.kv_cache.k_cache"] = torch.zeros(2, 4, 8, 32)
        sd[f"layers.{i}.attention.kv_cache.v_cache"] = torch.zeros(2, 4, 8, 32)
    path = tmp_path / "gpt.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError, match="pass block_size"):
        load_official(path)
    _assert_same_weights(load_official(path, block_size=CFG.block_size), model)
    assert load_official(path, block_size=16).rope_table().shape == (CFG.cls_token_num + 16, 16, 2)


def test_infer_config_reads_the_xl_shapes():
    with torch.device("meta"):
        sd = T2IBackbone(T2IConfig.preset("GPT-XL")).state_dict()
    assert infer_config(sd, block_size=1024) == T2IConfig.preset("GPT-XL", block_size=1024)
    unknown = {k: v for k, v in sd.items() if not k.startswith("layers.35.")}
    with pytest.raises(CheckpointError, match="pass n_head"):
        infer_config(unknown, block_size=256)
    assert infer_config(unknown, block_size=256, n_head=20).n_layer == 35
    with torch.device("meta"):
        gqa = T2IBackbone(CFG.replace(n_kv_head=2)).state_dict()
    assert infer_config(gqa, block_size=64).n_kv_head == 2


def test_our_format_round_trip(tmp_path: Path):
    model = _model()
    out = tmp_path / "t2i"
    save_t2i(model, out)
    config = json.loads((out / "config.json").read_text())
    assert config["type"] == "llamagen-t2i" and config["config"]["dim"] == CFG.dim
    loaded = load_t2i(out)
    assert loaded.cfg == CFG
    _assert_same_weights(loaded, model)
    assert load_backbone(out, dtype=torch.bfloat16).output.weight.dtype == torch.bfloat16
    assert load_backbone(out, block_size=16).cfg.block_size == 16
    with pytest.raises(InputError, match="already exists"):
        save_t2i(model, out)
    save_t2i(model, out, overwrite=True)
    (out / "config.json").write_text(json.dumps({"type": "something-else"}))
    with pytest.raises(CheckpointError, match="not a llamagen-t2i config"):
        load_t2i(out)
    with pytest.raises(CheckpointError):
        load_t2i(tmp_path / "missing")
