"""``aromni cosyvoice pack`` and ``resynth`` on tiny random models: the packed directory decodes its own codes,
the stream has the offline length, and a flow trained on another codebook is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aromni.cli.main import main
from aromni.cosyvoice.flow import FlowConfig, Token2Mel
from aromni.cosyvoice.fsq_config import FSQTokenizerConfig
from aromni.cosyvoice.fsq_tokenizer import FSQSpeechTokenizer
from aromni.cosyvoice.hift import HiFTConfig, HiFTGenerator
from aromni.tokenizers.base import load_tokenizer
from aromni.tokenizers.speech.audio_io import load_audio, save_wav


def _flow(vocab: int) -> Token2Mel:
    return Token2Mel(FlowConfig.preset("toy", vocab_size=vocab, encoder={"d_model": 32, "heads": 2, "linear_units": 64},
                                       estimator={"channels": 32, "attention_head_dim": 16, "num_heads": 2,
                                                  "num_mid_blocks": 1}))


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("stack")
    FSQSpeechTokenizer(FSQTokenizerConfig(dim=32, heads=2, encoder1_layers=1, encoder2_layers=1, code_dims=4,
                                          fsmn_kernel=5)).save_pretrained(root / "tok")
    _flow(81).save_pretrained(root / "flow")
    _flow(729).save_pretrained(root / "flow729")
    HiFTGenerator(HiFTConfig(base_channels=16, f0_channels=16)).save_pretrained(root / "hift")
    t = np.arange(16000 * 2) / 16000
    save_wav(root / "in.wav", 0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 2 * t), 16000)
    return root


def test_pack_then_resynth_offline_and_streaming(parts, tmp_path, capsys) -> None:
    out = tmp_path / "stack"
    assert main(["cosyvoice", "pack", "--tokenizer", str(parts / "tok"), "--flow", str(parts / "flow"),
                 "--hift", str(parts / "hift"), "--out", str(out), "--steps", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["codebook_size"] == 81
    tok = load_tokenizer(out)
    assert tok.token2wav is not None and tok.token2wav.config.n_timesteps == 2
    lengths = {}
    for mode in ("offline", "stream"):
        wav_out = tmp_path / f"{mode}.wav"
        args = ["cosyvoice", "resynth", "--stack", str(out), "--input", str(parts / "in.wav"), "--out", str(wav_out)]
        assert main(args + (["--stream"] if mode == "stream" else [])) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["tokens"] == 50  # 2 s at 25 Hz
        assert (report["first_audio_s"] is not None) == (mode == "stream")
        lengths[mode] = load_audio(wav_out, 24000).numel()
    assert lengths["offline"] == lengths["stream"] == 50 * 960


def test_pack_with_a_speaker_embedding_file(parts, tmp_path, capsys) -> None:
    vec = np.linspace(-1, 1, 192).astype(np.float32)
    np.save(tmp_path / "spk.npy", vec)
    out = tmp_path / "stack"
    assert main(["cosyvoice", "pack", "--tokenizer", str(parts / "tok"), "--flow", str(parts / "flow"),
                 "--hift", str(parts / "hift"), "--out", str(out), "--speaker", str(tmp_path / "spk.npy")]) == 0
    assert torch.equal(load_tokenizer(out).token2wav.speaker, torch.from_numpy(vec))
    np.save(tmp_path / "bad.npy", vec[:10])
    code = main(["cosyvoice", "pack", "--tokenizer", str(parts / "tok"), "--flow", str(parts / "flow"),
                 "--hift", str(parts / "hift"), "--out", str(tmp_path / "s2"), "--speaker", str(tmp_path / "bad.npy")])
    err = capsys.readouterr().err
    assert code == 2 and "expected [192]" in err and err.count("\n") == 1


def test_pack_refuses_a_flow_of_another_codebook(parts, tmp_path, capsys) -> None:
    code = main(["cosyvoice", "pack", "--tokenizer", str(parts / "tok"), "--flow", str(parts / "flow729"),
                 "--hift", str(parts / "hift"), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "reads 729 token ids, the tokenizer makes 81" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_resynth_needs_a_packed_directory(parts, tmp_path, capsys) -> None:
    code = main(["cosyvoice", "resynth", "--stack", str(parts / "tok"), "--input", str(parts / "in.wav"),
                 "--out", str(tmp_path / "o.wav")])
    err = capsys.readouterr().err
    assert code == 2 and "has no token2wav/ folder" in err
