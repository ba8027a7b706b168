"""Bad inputs to the flow model and its recipe are one-line aromni errors, never tracebacks from torch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from aromni.cosyvoice.flow import FlowConfig, Token2Mel, load_speaker_embedding
from aromni.errors import AromniError, CheckpointError, ConfigError, InputError
from aromni.training.recipes.cosyvoice_flow import read_token_lines, resolve_vocab, train_flow
from aromni.training.recipes.cosyvoice_flow_config import load_flow_train_config


@pytest.fixture(scope="module")
def model() -> Token2Mel:
    torch.manual_seed(0)
    return Token2Mel(FlowConfig.preset("toy", vocab_size=20, encoder={"d_model": 32, "heads": 2, "num_blocks": 1,
                                                                      "num_up_blocks": 1},
                                       estimator={"channels": 32, "num_heads": 2, "attention_head_dim": 16,
                                                  "num_mid_blocks": 1})).eval()


def one_line(e: pytest.ExceptionInfo) -> str:
    assert isinstance(e.value, AromniError) and "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("tokens, match", [
    (torch.tensor([[1, 2, 20]]), r"\[0, 20\)"),
    (torch.tensor([[1, -1, 2]]), r"\[0, 20\)"),
    (torch.tensor([1, 2, 3]), "expected"),
])
def test_bad_tokens(model, tokens, match):
    with pytest.raises(InputError, match=match) as e:
        model.inference(tokens, n_timesteps=1)
    one_line(e)


def test_padding_past_length_is_not_checked(model):
    mel = model.inference(torch.tensor([[1, 2, 3, 999]]), torch.tensor([3]), n_timesteps=1)
    assert mel.shape == (1, 80, 8) and mel[..., 6:].abs().sum() == 0


def test_bad_prompt_and_speaker_shapes(model):
    tokens, prompt = torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5]])
    for bad in (torch.zeros(1, 4, 80), torch.zeros(1, 80, 3), None):  # time-first, wrong length, missing
        with pytest.raises(InputError, match="prompt_mel") as e:
            model.inference(tokens, None, prompt, None, bad, n_timesteps=1)
        one_line(e)
    with pytest.raises(InputError, match="without prompt_tokens"):
        model.inference(tokens, prompt_mel=torch.zeros(1, 80, 4), n_timesteps=1)
    with pytest.raises(InputError, match="speaker embedding"):
        model.inference(tokens, spk=torch.zeros(1, 100), n_timesteps=1)
    with pytest.raises(InputError, match="noise"):
        model.inference(tokens, noise=torch.zeros(1, 80, 2), n_timesteps=1)
    with pytest.raises(InputError, match="finalize=False"):
        model.inference(torch.tensor([[1, 2]]), finalize=False, n_timesteps=1)


def test_speaker_embedding_files(tmp_path):
    np.save(tmp_path / "ok.npy", np.arange(192, dtype=np.float32))
    assert torch.equal(load_speaker_embedding(tmp_path / "ok.npy"), torch.arange(192.0))
    save_file({"embedding": torch.ones(192)}, str(tmp_path / "ok.safetensors"))
    assert load_speaker_embedding(tmp_path / "ok.safetensors").sum() == 192
    np.save(tmp_path / "short.npy", np.zeros(10, dtype=np.float32))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    (tmp_path / "emb.txt").write_text("1 2 3")
    for name, match in (("short.npy", "expected"), ("junk.npy", "unreadable"), ("emb.txt", "format"),
                        ("missing.npy", "no speaker")):
        with pytest.raises(InputError, match=match) as e:
            load_speaker_embedding(tmp_path / name)
        one_line(e)


def test_from_pretrained_errors(tmp_path, model):
    with pytest.raises(CheckpointError, match="not a flow model directory"):
        Token2Mel.from_pretrained(tmp_path / "none")
    model.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["encoder"]["d_model"] = 64
    cfg["encoder"]["heads"] = 2
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not fit") as e:
        Token2Mel.from_pretrained(tmp_path / "m")
    one_line(e)


def test_recipe_input_errors(tmp_path):
    cfg = load_flow_train_config(None, ["steps=1", "vocab_size=5"])
    (tmp_path / "w").mkdir()
    with pytest.raises(InputError, match="no token file"):
        train_flow(cfg, tmp_path / "missing.jsonl", tmp_path / "w", tmp_path / "o1", progress=False)
    with pytest.raises(InputError, match="no such world"):
        train_flow(cfg, tmp_path / "missing.jsonl", tmp_path / "nowhere", tmp_path / "o2", progress=False)
    (tmp_path / "t.jsonl").write_text(json.dumps({"path": "a.wav", "split": "train", "tokens": [1, "x"]}) + "\n")
    with pytest.raises(InputError, match="line 1"):
        read_token_lines(tmp_path / "t.jsonl", "train")
    (tmp_path / "t.jsonl").write_text(json.dumps({"path": "a.wav", "split": "train", "tokens": [1, 9]}) + "\n")
    with pytest.raises(InputError, match=r"outside \[0, 5\)"):
        train_flow(cfg, tmp_path / "t.jsonl", tmp_path / "w", tmp_path / "o3", progress=False)
    (tmp_path / "t.jsonl").write_text(json.dumps({"path": "a.wav", "split": "train", "tokens": [1, 2]}) + "\n")
    with pytest.raises(AromniError) as e:  # the audio file is missing
        train_flow(cfg, tmp_path / "t.jsonl", tmp_path / "w", tmp_path / "o4", progress=False)
    one_line(e)
    with pytest.raises(ConfigError):
        load_flow_train_config(None, ["crop_tokens=3"])
    with pytest.raises(ConfigError):
        load_flow_train_config(None, ["model.encoder.d_model=30", "model.encoder.heads=4"])


def test_vocab_from_the_tokenizer_config(tmp_path):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "config.json").write_text(json.dumps(
        {"type": "fsq_speech", "config": {"code_dims": 6}, "metadata": {"codebook_size": 729}}))
    assert resolve_vocab(load_flow_train_config(None, [f"tokenizer={tmp_path / 'tok'}"]), "unused") == 729
    (tmp_path / "tok" / "config.json").write_text(json.dumps({"config": {"code_dims": 4}}))
    assert resolve_vocab(load_flow_train_config(None, [f"tokenizer={tmp_path / 'tok'}"]), "unused") == 81
    (tmp_path / "tok" / "config.json").write_text(json.dumps({"type": "other"}))
    with pytest.raises(InputError, match="no codebook_size"):
        resolve_vocab(load_flow_train_config(None, [f"tokenizer={tmp_path / 'tok'}"]), "unused")
    assert resolve_vocab(load_flow_train_config(None, ["vocab_size=12"]), "unused") == 12
