"""The toy text conditioner: shapes and LlamaGen's left padding, truncation by the shared rule, batch equals
alone, features independent of padding (amount and content, in both torch encoder-layer paths), exact
save/load round trip, refusal to overwrite, clear errors for bad artefacts and bad input, and training
through the toy t2i backbone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.omnivivo.caption_clean import preprocess_caption
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone
from aromni.omnivivo.text_conditioner import TextConditioner
from aromni.omnivivo.toy_conditioner import ToyTextConditioner, ToyTextConfig
from aromni.tokenizers.text import TextTokenizer

CORPUS = [f"a {c} {s} at the {v} {h} on a {b} background" for c in ("red", "green", "blue", "yellow")
          for s in ("circle", "square", "triangle") for v in ("top", "bottom") for h in ("left", "right")
          for b in ("white", "black")]
TEXTS = ["a red circle at the top left on a blue background", "a square", "", "Blue TRIANGLE"]
L = 16


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.train(CORPUS, vocab_size=320, special_tokens=["<pad>"], min_frequency=1)


def _model(tokenizer: TextTokenizer, seed: int = 0, **overrides: object) -> ToyTextConditioner:
    torch.manual_seed(seed)
    return ToyTextConditioner(ToyTextConfig(vocab_size=tokenizer.vocab_size, **overrides), tokenizer).eval()


def test_shapes_and_left_padding(tokenizer: TextTokenizer):
    model = _model(tokenizer)
    assert isinstance(model, TextConditioner) and model.dim == 64 and model.max_length == L
    with torch.no_grad():
        feats, mask = model.encode(TEXTS)
    assert feats.shape == (4, L, 64) and mask.shape == (4, L) and mask.dtype == torch.bool
    for b, text in enumerate(TEXTS):
        n = min(len(tokenizer.encode(preprocess_caption(text))) + 1, L)  # + EOS
        assert mask[b].tolist() == [False] * (L - n) + [True] * n
        assert (feats[b, : L - n] == 0).all()
        assert not (feats[b, L - n:] == 0).all(dim=-1).any()


def test_truncation_keeps_the_start_and_eos(tokenizer: TextTokenizer):
    model = _model(tokenizer)
    long = " ".join(CORPUS[:4])
    ids, mask = model.tokenize([long])
    assert mask.all() and ids[0, -1] == model.eos_id
    assert ids[0, :-1].tolist() == tokenizer.encode(long)[: L - 1]


def test_batch_equals_alone(tokenizer: TextTokenizer):
    model = _model(tokenizer)
    with torch.no_grad():
        batch, batch_mask = model.encode(TEXTS)
        for b, text in enumerate(TEXTS):
            alone, alone_mask = model.encode([text])
            assert torch.equal(alone_mask[0], batch_mask[b])
            torch.testing.assert_close(alone[0], batch[b], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("train", [False, True], ids=["eval-fast-path", "train-slow-path"])
def test_features_do_not_depend_on_padding(tokenizer: TextTokenizer, train: bool):
    model = _model(tokenizer).train(train)  # dropout 0: train mode only switches torch's layer path
    ids, mask = model.tokenize(TEXTS)
    longest = int(mask.sum(dim=1).max())
    with torch.set_grad_enabled(train):
        full, full_mask = model(ids, mask)
        short, short_mask = model(ids[:, :longest], mask[:, :longest])  # less padding
        junk = torch.where(mask, ids, torch.randint(0, model.eos_id + 1, ids.shape))  # any id in pad slots
        junk_feats, _ = model(junk, mask)
    assert torch.equal(full_mask, short_mask)
    torch.testing.assert_close(short, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(junk_feats, full, atol=1e-5, rtol=1e-5)


def test_save_load_round_trip(tokenizer: TextTokenizer, tmp_path: Path):
    model = _model(tokenizer, seed=3, n_layer=1, dim=32, n_head=2, max_length=8, clean_captions=False)
    model.save_pretrained(tmp_path / "cond")
    assert json.loads((tmp_path / "cond" / "config.json").read_text())["type"] == "omnivivo_toy_text"
    loaded = ToyTextConditioner.from_pretrained(tmp_path / "cond")
    assert loaded.config == model.config and not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    with torch.no_grad():
        assert torch.equal(loaded.encode(TEXTS)[0], model.encode(TEXTS)[0])
    with pytest.raises(InputError, match="already exists"):
        model.save_pretrained(tmp_path / "cond")
    model.save_pretrained(tmp_path / "cond", overwrite=True)


def test_bad_artefacts(tokenizer: TextTokenizer, tmp_path: Path):
    with pytest.raises(CheckpointError):
        ToyTextConditioner.from_pretrained(tmp_path / "nowhere")
    model = _model(tokenizer)
    path = tmp_path / "cond"
    model.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "type": "llamagen-t2i"}))
    with pytest.raises(CheckpointError, match="not a omnivivo_toy_text config"):
        ToyTextConditioner.from_pretrained(path)
    (path / "config.json").write_text(json.dumps({**config, "config": {**config["config"], "dim": 32}}))
    with pytest.raises(CheckpointError, match="does not match"):
        ToyTextConditioner.from_pretrained(path)
    (path / "config.json").write_text(json.dumps({**config, "config": {**config["config"], "depth": 3}}))
    with pytest.raises(CheckpointError, match="unknown"):
        ToyTextConditioner.from_pretrained(path)
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="safetensors"):
        ToyTextConditioner.from_pretrained(path)


def test_bad_input(tokenizer: TextTokenizer):
    model = _model(tokenizer)
    for bad in ([], "a caption", ["ok", 3], None, ["\ud800"]):
        with pytest.raises(InputError):
            model.encode(bad)
    ids, mask = model.tokenize(["a red circle"])
    with pytest.raises(InputError, match="caption slots"):
        model(torch.cat([ids, ids], dim=1), torch.cat([mask, mask], dim=1))
    with pytest.raises(InputError, match="no valid token"):
        model(ids, torch.zeros_like(mask))
    with pytest.raises(InputError, match="outside"):
        model(torch.where(mask, model.eos_id + 1, ids), mask)


@pytest.mark.parametrize(("overrides", "match"), [
    ({"dim": 30, "n_head": 4}, "divisible"), ({"max_length": 1}, "no room"), ({"dropout": 1.0}, "dropout"),
    ({"n_layer": 0}, "n_layer"), ({"clean_captions": "yes"}, "clean_captions"),
])
def test_config_validation(overrides: dict[str, object], match: str):
    with pytest.raises(ConfigError, match=match):
        ToyTextConfig(vocab_size=10, **overrides)


def test_tokenizer_must_match_the_config(tokenizer: TextTokenizer):
    with pytest.raises(ConfigError, match="vocab_size"):
        ToyTextConditioner(ToyTextConfig(vocab_size=tokenizer.vocab_size + 1), tokenizer)


def test_trains_through_the_toy_backbone_without_touching_pads(tokenizer: TextTokenizer):
    model = _model(tokenizer).train()
    backbone = T2IBackbone(T2IConfig.preset("toy")).eval()
    backbone.init_weights(zero_output=False)  # a zero head would send no gradient back
    feats, mask = model.encode(TEXTS)
    codes = torch.randint(0, backbone.cfg.vocab_size, (len(TEXTS), 8))
    logits = backbone(feats, codes, mask)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), codes.flatten()).backward()
    grad = model.tok_embeddings.weight.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert (grad[model.pad_id] == 0).all()  # pad slots are masked keys and zeroed outputs: no gradient
    assert all(p.grad is not None for p in model.layers.parameters())
