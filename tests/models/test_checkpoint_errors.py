"""Malformed checkpoints raise CheckpointError naming the file / key and the fix (never a raw traceback)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from chameleon_refs import random_decoder, tiny_config
from safetensors.torch import load_file, save_file

from aromni.errors import CheckpointError
from aromni.models import load_decoder, save_checkpoint


class NotATensor:
    """Any class instance: weights_only loading must refuse to unpickle it."""

    def __init__(self):
        self.payload = [1, 2, 3]


@pytest.fixture(scope="module")
def decoder():
    return random_decoder(tiny_config(), seed=1, shared_qk_norm=True)


@pytest.fixture
def saved(decoder, tmp_path):
    def make(fmt, **kw):
        save_checkpoint(decoder, tmp_path / fmt, fmt, **kw)
        return tmp_path / fmt
    return make


@pytest.mark.parametrize("fmt,key", [("hf", "model.layers.1.mlp.up_proj.weight"),
                                     ("hf-anole", "model.layers.0.self_attn.k_norm.bias"),
                                     ("aromni", "layers.1.attn.qkv.weight")])
def test_missing_key_safetensors(saved, fmt, key):
    path = saved(fmt)
    state = load_file(str(path / "model.safetensors"))
    del state[key]
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing") as e:
        load_decoder(path)
    assert key in str(e.value)


def test_missing_key_meta(saved):
    path = saved("meta")
    state = torch.load(path / "consolidated.pth", weights_only=True)
    del state["layers.1.feed_forward.w3.weight"]
    torch.save(state, path / "consolidated.pth")
    with pytest.raises(CheckpointError, match=r"layers\.1\.feed_forward\.w3\.weight.*missing"):
        load_decoder(path)


def test_wrong_shape_hf_names_key_and_file(saved):
    path = saved("hf")
    cfg = json.loads((path / "config.json").read_text())
    cfg["intermediate_size"] = 128
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"gate_proj\.weight has shape \(96, 32\).*\(128, 32\)") as e:
        load_decoder(path)
    assert "model.safetensors" in str(e.value) and "config.json" in str(e.value)


def test_wrong_shape_meta(saved):
    path = saved("meta")
    params = json.loads((path / "params.json").read_text())
    params["model"]["n_heads"] = 8
    params["model"]["n_kv_heads"] = 4
    (path / "params.json").write_text(json.dumps(params))
    with pytest.raises(CheckpointError, match="shape") as e:
        load_decoder(path)
    assert "params.json" in str(e.value)


def test_unexpected_extra_layer(saved):
    path = saved("hf")
    cfg = json.loads((path / "config.json").read_text())
    cfg["num_hidden_layers"] = 1
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'model\.layers\.1\."):
        load_decoder(path)


def test_pickled_object_in_pth_is_refused(saved):
    path = saved("meta")
    state = torch.load(path / "consolidated.pth", weights_only=True)
    state["evil"] = NotATensor()
    torch.save(state, path / "consolidated.pth")
    with pytest.raises(CheckpointError, match="arbitrary pickled Python objects") as e:
        load_decoder(path)
    assert "consolidated.pth" in str(e.value)


def test_garbage_pth(saved):
    path = saved("meta")
    (path / "consolidated.pth").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="consolidated.pth: not a readable PyTorch checkpoint"):
        load_decoder(path)


def test_missing_params_json(saved):
    path = saved("meta")
    (path / "params.json").unlink()
    with pytest.raises(CheckpointError, match="params.json"):
        load_decoder(path)


def test_missing_model_parallel_shard(saved, decoder):
    path = saved("meta", num_shards=2)
    (path / "consolidated.01.pth").unlink()
    with pytest.raises(CheckpointError, match="model_parallel_size is 2 but 1"):
        load_decoder(path)


@pytest.mark.parametrize("fmt", ["hf", "aromni"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_garbage_safetensors(saved, fmt, damage):
    path = saved(fmt)
    f = path / "model.safetensors"
    if damage == "garbage":
        f.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + os.urandom(256))
    else:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_decoder(path)


def test_shard_listed_in_index_is_missing(saved):
    path = saved("hf", max_shard_bytes=20_000)
    shard = sorted(path.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"{shard.name}: missing"):
        load_decoder(path)


def test_unknown_or_missing_paths(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_decoder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a recognised decoder checkpoint"):
        load_decoder(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_decoder(tmp_path / "bad")
    (tmp_path / "orphan").mkdir()
    torch.save({"x": torch.zeros(1)}, tmp_path / "orphan" / "consolidated.pth")
    with pytest.raises(CheckpointError, match="without params.json"):
        load_decoder(tmp_path / "orphan")


def test_hf_config_without_weights_and_unsupported_fields(saved):
    path = saved("hf")
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "attention_bias": True}))
    with pytest.raises(CheckpointError, match="attention_bias"):
        load_decoder(path)
    (path / "config.json").write_text(json.dumps({**cfg, "rope_scaling": {"type": "linear", "factor": 2.0}}))
    with pytest.raises(CheckpointError, match="RoPE scaling"):
        load_decoder(path)
    (path / "model.safetensors").unlink()
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="no weight files"):
        load_decoder(path)


def test_aromni_missing_weights(saved):
    path = saved("aromni")
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        load_decoder(path)
