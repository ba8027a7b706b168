"""LlamaGen VQ checkpoint files and our saved format.

Tiny files written here in LlamaGen's layouts ({"model": sd}, "ema", "module", "state_dict", a vq_train.py
checkpoint with args) load with every key and give identical outputs. Foreign pickled objects, wrong keys and
wrong shapes are refused with a CheckpointError naming them. The config is inferred from the shapes.
save_pretrained/from_pretrained round-trips exactly."""

from __future__ import annotations

import argparse
import copy
import pickle

import pytest
import torch

from aromni.errors import CheckpointError, InputError
from aromni.tokenizers import base
from aromni.tokenizers.image.llamagen_vq import LlamaGenVQ
from aromni.tokenizers.image.llamagen_vq_checkpoint import infer_config
from aromni.tokenizers.image.llamagen_vq_config import LlamaGenVQConfig
from aromni.utils.io import read_json

TOY = LlamaGenVQConfig.preset("toy")


class Foreign:
    """A class the weights-only unpickler must refuse to import."""


@pytest.fixture(scope="module")
def trained() -> LlamaGenVQ:
    """A toy model whose weights and usage window differ from a fresh init (noisy weights, one training
    forward)."""
    torch.manual_seed(0)
    m = LlamaGenVQ(TOY)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    m.train()(torch.rand(2, 3, 64, 64) * 2 - 1)  # fills the end of quantize.codebook_used
    return m.eval()


@pytest.fixture(scope="module")
def probe() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.rand(2, 3, 64, 64) * 2 - 1, torch.randint(0, 256, (2, 64))


def state_of(m: LlamaGenVQ) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def assert_same(a: LlamaGenVQ, b: LlamaGenVQ, probe: tuple[torch.Tensor, torch.Tensor]) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) and sa[k].dtype == sb[k].dtype for k in sa)
    x, codes = probe
    assert torch.equal(a.encode(x), b.encode(x))
    assert torch.equal(a.decode(codes), b.decode(codes))


@pytest.mark.parametrize("entry", ["model", "ema", "module", "state_dict", None])
def test_official_layouts_load_every_key_with_identical_outputs(trained, probe, tmp_path, entry):
    sd = state_of(trained)
    assert sd["quantize.codebook_used"].abs().sum() > 0  # the buffer carries state, so loading it is checked
    path = tmp_path / "vq_ds8_toy.pt"
    torch.save(sd if entry is None else {entry: sd}, path)  # None: a bare state dict
    loaded = LlamaGenVQ.from_llamagen(path)
    assert loaded.cfg == TOY  # every architecture field read back from the shapes, the rest from the preset
    assert loaded.load_report["entry"] == (entry or "") and loaded.load_report["preset"] == "toy"
    assert loaded.load_report["loaded_keys"] == len(sd) == 300
    assert not loaded.training
    assert_same(trained, loaded, probe)


def test_training_checkpoint_with_args_loads_ema_first_and_reads_the_loss_settings(trained, probe, tmp_path):
    sd = state_of(trained)
    ema = {k: v + 1.0 if k != "quantize.codebook_used" else v for k, v in sd.items()}
    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], betas=(0.9, 0.95))
    args = argparse.Namespace(vq_model="VQ-8", data_path="/data", commit_loss_beta=0.5,
                              entropy_loss_ratio=0.1, dropout_p=0.0, image_size=128, ema=True,
                              codebook_l2_norm=True, lr=1e-4)
    path = tmp_path / "0005000.pt"
    torch.save({"model": sd, "ema": ema, "optimizer": opt.state_dict(), "discriminator": {"w": torch.ones(2)},
                "optimizer_disc": opt.state_dict(), "steps": 5000, "args": args}, path)
    # Plain weights-only loading refuses the Namespace: the scoped allow-list is what makes this file load.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    default = LlamaGenVQ.from_llamagen(path)
    assert default.load_report["entry"] == "ema"  # LlamaGen's VQ loaders take "ema" first
    assert torch.equal(default.state_dict()["decoder.conv_out.bias"], ema["decoder.conv_out.bias"])
    cfg = default.cfg
    assert (cfg.commit_loss_beta, cfg.entropy_loss_ratio, cfg.image_size) == (0.5, 0.1, 128)
    model = LlamaGenVQ.from_llamagen(path, entry="model", image_size=64)
    assert model.load_report["entry"] == "model" and model.cfg.image_size == 64
    assert_same(trained, model, probe)
    if hasattr(torch.serialization, "get_safe_globals"):  # the allow-list was scoped to our load
        assert argparse.Namespace not in torch.serialization.get_safe_globals()


@pytest.mark.parametrize("where", ["top", "args"])
def test_a_foreign_pickled_object_is_refused(trained, tmp_path, where):
    sd = state_of(trained)
    ckpt = {"model": sd, "extra": Foreign()} if where == "top" else {"model": sd,
                                                                      "args": argparse.Namespace(x=Foreign())}
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="arbitrary"):
        LlamaGenVQ.from_llamagen(tmp_path / "bad.pt")


def test_missing_unexpected_and_misshapen_keys_are_named(trained, tmp_path):
    sd = state_of(trained)
    del sd["decoder.conv_out.bias"]
    sd["loss.discriminator.weight"] = torch.ones(1)
    torch.save({"model": sd}, tmp_path / "keys.pt")
    with pytest.raises(CheckpointError, match="decoder.conv_out.bias") as err:
        LlamaGenVQ.from_llamagen(tmp_path / "keys.pt")
    assert "loss.discriminator.weight" in str(err.value) and "missing 1" in str(err.value)
    torch.save({"model": state_of(trained)}, tmp_path / "toy.pt")
    with pytest.raises(CheckpointError, match="quantize.embedding.weight has shape"):
        LlamaGenVQ.from_llamagen(tmp_path / "toy.pt", config=TOY.replace(codebook_size=512))
    with pytest.raises(CheckpointError, match="missing"):  # a VQ-8 config has other blocks entirely
        LlamaGenVQ.from_llamagen(tmp_path / "toy.pt", config=LlamaGenVQConfig.preset("VQ-8"))


def test_files_that_are_not_llamagen_checkpoints_are_refused(trained, tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    torch.save([1, 2], tmp_path / "list.pt")
    torch.save({"weights": state_of(trained)}, tmp_path / "other.pt")
    torch.save({"model": {"x": 1}}, tmp_path / "nontensor.pt")
    for name, match in [("junk.pt", "not a readable"), ("list.pt", "not a dict"),
                        ("other.pt", "no model weights"), ("nontensor.pt", "not a state dict"),
                        ("absent.pt", "missing")]:
        with pytest.raises(CheckpointError, match=match):
            LlamaGenVQ.from_llamagen(tmp_path / name)
    with pytest.raises(CheckpointError, match="no 'ema' entry"):
        LlamaGenVQ.from_llamagen(tmp_path / "other.pt", entry="ema")


def test_usage_buffer_absence_is_inferred(trained, probe, tmp_path):
    sd = state_of(trained)
    del sd["quantize.codebook_used"]  # a model built with codebook_show_usage=False
    torch.save({"model": sd}, tmp_path / "nousage.pt")
    m = LlamaGenVQ.from_llamagen(tmp_path / "nousage.pt", image_size=64)
    assert not m.cfg.codebook_show_usage and m.load_report["preset"] is None
    assert torch.equal(m.encode(probe[0]), trained.encode(probe[0]))


@pytest.mark.parametrize("preset", ["VQ-16", "VQ-8"])
def test_full_size_configs_are_inferred_from_shapes(preset):
    with torch.device("meta"):
        sd = LlamaGenVQ(LlamaGenVQConfig.preset(preset)).state_dict()
    cfg = infer_config(sd, "meta")
    assert cfg == LlamaGenVQConfig.preset(preset) and cfg.preset_name() == preset


def test_save_pretrained_round_trip_is_exact(trained, probe, tmp_path, monkeypatch):
    out = tmp_path / "tok"
    trained.save_pretrained(out)
    cfg = read_json(out / "config.json")
    assert cfg["type"] == "llamagen_vq" and (out / "model.safetensors").is_file()
    again = LlamaGenVQ.from_pretrained(out)
    assert again.cfg == trained.cfg
    assert_same(trained, again, probe)
    with pytest.raises(InputError):  # never overwrite silently
        trained.save_pretrained(out)
    trained.save_pretrained(out, overwrite=True)
    half = LlamaGenVQ.from_pretrained(out, dtype=torch.bfloat16)
    assert half.quant_conv.weight.dtype == torch.bfloat16
    assert half.quantize.codebook_used.dtype == torch.float32  # code indices up to 65535 need float32
    assert torch.equal(half.quantize.codebook_used, trained.quantize.codebook_used)
    # the one-line registration the shared TOKENIZER_TYPES table needs makes load_tokenizer find it
    monkeypatch.setitem(base.TOKENIZER_TYPES, "llamagen_vq", "aromni.tokenizers.image.llamagen_vq:LlamaGenVQ")
    assert_same(trained, base.load_tokenizer(out), probe)
    with pytest.raises(CheckpointError):
        LlamaGenVQ.from_pretrained(tmp_path / "absent")


def test_half_precision_files_compute_in_float32(trained, probe, tmp_path):
    """A tokenizer saved in fp16 (a shipped bundle's smaller files) loads as float32 holding the fp16-rounded
    weights, unless a dtype is asked for."""
    rounded = copy.deepcopy(trained).to(torch.float16)
    rounded.quantize.codebook_used.data = trained.quantize.codebook_used.clone()
    rounded.save_pretrained(tmp_path / "half")
    loaded = LlamaGenVQ.from_pretrained(tmp_path / "half")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    reference = copy.deepcopy(rounded).float()
    assert_same(reference, loaded, probe)
    assert LlamaGenVQ.from_pretrained(tmp_path / "half", dtype=torch.float16).quant_conv.weight.dtype == torch.float16
