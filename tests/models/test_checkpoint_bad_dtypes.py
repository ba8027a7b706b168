"""Hostile checkpoints (issue #9): integer / bool weights, bad safetensors headers and pickles with a
``__reduce__`` payload all raise CheckpointError naming the file and the tensor; the payload never runs."""

from __future__ import annotations

import json
import os
import struct

import pytest
import torch
from chameleon_refs import random_decoder, tiny_config
from safetensors.torch import load_file, save_file

from aromni.errors import CheckpointError
from aromni.models import load_decoder, save_checkpoint

#: How a dtype is named in the error: torch's name (our format, .pth) or the safetensors code (HF headers).
DTYPE_NAMES = {torch.int8: ("torch.int8", "I8"), torch.bool: ("torch.bool", "BOOL"),
               torch.int64: ("torch.int64", "I64"), torch.uint8: ("torch.uint8", "U8")}


class Payload:
    """Unpickling this runs ``os.system('touch <marker>')``: weights_only loading must never do it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def decoder():
    return random_decoder(tiny_config(), seed=2, shared_qk_norm=True)


@pytest.fixture
def saved(decoder, tmp_path):
    def make(fmt):
        save_checkpoint(decoder, tmp_path / fmt, fmt)
        return tmp_path / fmt
    return make


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.int64, torch.uint8])
@pytest.mark.parametrize("fmt, key", [("aromni", "layers.0.attn.qkv.weight"),
                                      ("hf", "model.layers.0.self_attn.q_proj.weight"),
                                      ("hf-anole", "model.norm.weight")])
def test_non_float_weights_in_safetensors_name_the_tensor_and_dtype(saved, fmt, key, dtype):
    path = saved(fmt)
    state = load_file(str(path / "model.safetensors"))
    state[key] = state[key].to(dtype)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as e:
        load_decoder(path)
    msg = str(e.value)
    assert key in msg and "floating-point" in msg and "\n" not in msg
    assert any(f"stored as {name}," in msg for name in DTYPE_NAMES[dtype]), msg


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool])
def test_non_float_weights_in_meta_pth(saved, dtype):
    path = saved("meta")
    state = torch.load(path / "consolidated.pth", weights_only=True)
    state["layers.0.attention.wq.weight"] = state["layers.0.attention.wq.weight"].to(dtype)
    torch.save(state, path / "consolidated.pth")
    with pytest.raises(CheckpointError, match=rf"'layers\.0\.attention\.wq\.weight' is stored as {dtype}"):
        load_decoder(path)


def test_wrong_shape_in_our_format(saved):
    path = saved("aromni")
    state = load_file(str(path / "model.safetensors"))
    state["norm.weight"] = torch.ones(3)
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"norm\.weight has shape \(3,\), config expects"):
        load_decoder(path)


@pytest.mark.parametrize("key, value", [("hidden_size", "abc"), ("hidden_size", 32.5), ("rms_norm_eps", "x"),
                                        ("rms_norm_eps", float("nan")), ("max_position_embeddings", [1]),
                                        ("num_key_value_heads", "two"), ("rope_theta", {"a": 1})])
def test_hf_config_values_that_are_not_numbers(saved, key, value):
    path = saved("hf")
    raw = json.loads((path / "config.json").read_text())
    raw[key] = value
    (path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="config.json: ") as e:
        load_decoder(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("value", ["abc", [4], None])
def test_meta_params_values_that_are_not_numbers(saved, value):
    path = saved("meta")
    for name in ("params.json", "consolidate_params.json"):
        f = path / name
        if f.is_file():
            raw = json.loads(f.read_text())
            raw["dim"] = value
            if "model" in raw and isinstance(raw["model"], dict):
                raw["model"]["dim"] = value
            f.write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="params.json"):
        load_decoder(path)


def _header_file(header: bytes, length: int | None = None, body: bytes = b"\0" * 64) -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header + body


@pytest.mark.parametrize("fmt", ["aromni", "hf"])
@pytest.mark.parametrize("data", [
    pytest.param(os.urandom(4096), id="random bytes"),
    pytest.param(_header_file(b"{}", length=2 ** 62), id="huge header length"),
    pytest.param(_header_file(b"{}", length=10_000), id="header past the end"),
    pytest.param(_header_file(b"{not json at all"), id="invalid JSON header"),
    pytest.param(_header_file(b"[1, 2, 3]"), id="list header"),
    pytest.param(_header_file(json.dumps({"norm.weight": {"dtype": "XYZ", "shape": [4],
                                                          "data_offsets": [0, 16]}}).encode()), id="unknown dtype"),
    pytest.param(_header_file(json.dumps({"norm.weight": {"dtype": "F32", "shape": [2 ** 62, 2 ** 62],
                                                          "data_offsets": [0, 16]}}).encode()), id="overflowing shape"),
    pytest.param(b"", id="empty file"),
])
def test_bad_safetensors_files_are_checkpoint_errors(saved, fmt, data):
    path = saved(fmt)
    (path / "model.safetensors").write_bytes(data)
    with pytest.raises(CheckpointError) as e:
        load_decoder(path)
    assert "model.safetensors" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("target", ["meta", "hf-bin"])
def test_reduce_payload_in_pth_never_runs(saved, tmp_path, target):
    marker = tmp_path / "PWNED"
    if target == "meta":
        path = saved("meta")
        state = torch.load(path / "consolidated.pth", weights_only=True)
        state["evil"] = Payload(marker)
        torch.save(state, path / "consolidated.pth")
    else:
        path = saved("hf")
        state = load_file(str(path / "model.safetensors"))
        (path / "model.safetensors").unlink()
        torch.save({**state, "evil": Payload(marker)}, path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="arbitrary pickled Python objects"):
        load_decoder(path)
    assert not marker.exists()


def test_reduce_payload_in_training_state_and_perceptual_table_never_runs(tmp_path):
    from aromni.training.checkpoint import TRAINER_STATE, load_checkpoint
    from aromni.training.perceptual import load_table

    marker = tmp_path / "PWNED"
    step = tmp_path / "step-00000001"
    save_checkpoint(random_decoder(tiny_config(), seed=0), step, "aromni")
    torch.save({"step": 1, "evil": Payload(marker)}, step / TRAINER_STATE)
    with pytest.raises(CheckpointError, match="arbitrary (pickled )?Python objects"):
        load_checkpoint(step)
    for suffix in (".pt", ".ckpt", ".pth"):
        torch.save({"table": Payload(marker)}, tmp_path / f"table{suffix}")
        with pytest.raises(CheckpointError):
            load_table(tmp_path / f"table{suffix}")
    assert not marker.exists()


def test_no_torch_load_without_weights_only():
    """Every torch.load in the package passes weights_only=True (the only safe way to read a .pt/.pth/.ckpt)."""
    import re
    from pathlib import Path

    import aromni

    root = Path(aromni.__file__).parent
    offenders = []
    for f in root.rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start():m.start() + 200]  # the call's arguments (calls span at most a couple of lines)
            if "weights_only=True" not in call:
                offenders.append(f"{f.relative_to(root)}: {call.splitlines()[0]}")
    assert not offenders, offenders
