"""``aromni omnivivo train``: a run from a YAML file plus key=value settings writes checkpoints, metrics, the
average and the export; ``--resume`` extends it (once the old export is moved away); every bad input (missing
files, a manifest line without audio, a tokenizer of the wrong modality, components that do not fit, unknown keys,
misuse of --resume / --config / --out) is one ``error:`` line naming the problem and the fix, exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cliparts import run

from aromni.omnivivo.t2i_checkpoint import save_t2i
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone
from aromni.omnivivo.toy_conditioner import ToyTextConditioner, ToyTextConfig
from aromni.tokenizers.speech.audio_io import save_wav
from aromni.tokenizers.speech.codec import CodecConfig, StreamingCodec
from aromni.tokenizers.text import TextTokenizer

TEXTS = ["a low hum", "a high beep", "a short click"]
SR = 16000


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    """Tiny components (toy backbone, toy conditioner, tiny codec), three tones and a manifest, a YAML file."""
    root = tmp_path_factory.mktemp("cli_vivo")
    torch.manual_seed(0)
    backbone = T2IBackbone(T2IConfig.preset("toy", n_layer=1, block_size=16)).eval()
    backbone.init_weights(zero_output=False)
    save_t2i(backbone, root / "backbone")
    tok = TextTokenizer.train(TEXTS * 4, vocab_size=280, special_tokens=["<pad>"], min_frequency=1)
    ToyTextConditioner(ToyTextConfig(vocab_size=tok.vocab_size, n_layer=1, ffn_dim=64), tok).save_pretrained(
        root / "conditioner")
    ToyTextConditioner(ToyTextConfig(vocab_size=tok.vocab_size, dim=32, n_layer=1, ffn_dim=64), tok).save_pretrained(
        root / "narrow_conditioner")
    StreamingCodec(CodecConfig.preset("tiny")).eval().save_pretrained(root / "codec")
    lines = []
    for i, (text, freq) in enumerate(zip(TEXTS, (220.0, 880.0, 440.0))):
        t = np.arange(int(0.2 * SR)) / SR
        save_wav(root / f"{i}.wav", 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32), SR)
        lines.append(json.dumps({"text": text, "audio": f"{i}.wav"}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    (root / "run.yaml").write_text(
        f"backbone: {root / 'backbone'}\nconditioner: {root / 'conditioner'}\nspeech_tokenizer: {root / 'codec'}\n"
        f"train_manifest: {root / 'train.jsonl'}\n"
        "vivo: {branch_layers: 1, max_speech_len: 16, lora: {r: 2, alpha: 2}}\n"
        "steps: 4\nbatch_size: 2\nlr: 1.0e-3\nsave_every: 2\nkeep_last: 3\naverage_last: 2\nlog_every: 1\n")
    return {"root": root, "yaml": root / "run.yaml"}


def _assert_one_line(code, err, fragment):
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert fragment in err[0], err


def test_train_then_resume_to_more_steps(parts, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(["omnivivo", "train", "--config", str(parts["yaml"]), "--out", str(out), "--quiet",
                             "eval_every=0"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["done"] and summary["step"] == 4 and summary["averaged"] == ["step-00000002", "step-00000004"]
    assert (out / "omnivivo" / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "omnivivo" / "speech.safetensors").is_file() and (out / "averaged.safetensors").is_file()
    assert sum(1 for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line) == 4
    code, _, err = run(["omnivivo", "train", "--out", str(out), "--resume", "steps=6", "--quiet"], capsys)
    _assert_one_line(code, err, "holds the export of step 4")
    shutil.move(out / "omnivivo", tmp_path / "export_step4")
    code, stdout, err = run(["omnivivo", "train", "--out", str(out), "--resume", "steps=6", "--quiet"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["step"] == 6 and json.loads(stdout)["averaged"] == ["step-00000004", "step-00000006"]
    code, _, err = run(["omnivivo", "train", "--out", str(out), "--resume", "lr=1", "--quiet"], capsys)
    _assert_one_line(code, err, "cannot change ['lr'] when resuming")


def _bad_manifest(root: Path) -> str:
    (root / "bad.jsonl").write_text('{"text": "a low hum", "audio": "0.wav"}\n{"text": "no audio here"}\n')
    return f"train_manifest={root / 'bad.jsonl'}"


@pytest.mark.parametrize("make, fragment", [
    (lambda r: f"backbone={r / 'missing_backbone'}", "missing_backbone: no such t2i backbone (backbone="),
    (lambda r: f"speech_tokenizer={r / 'conditioner' / 'tokenizer'}", "a text tokenizer, not a speech tokenizer"),
    (lambda r: f"speech_tokenizer={r / 'nowhere'}", "nowhere: no such speech tokenizer directory"),
    (lambda r: f"conditioner={r / 'codec'}", "not a text conditioner"),
    (lambda r: f"conditioner={r / 'narrow_conditioner'}", "gives [16, 32] caption features, the backbone"),
    (_bad_manifest, 'bad.jsonl:2: no "audio" path'),
    (lambda r: f"train_manifest={r / 'none.jsonl'}", "none.jsonl: no such manifest"),
    (lambda r: "vivo.max_speech_len=4", "encodes to 8 speech codes, more than vivo.max_speech_len 4"),
    (lambda r: "nope=1", "unknown keys ['nope']"),
    (lambda r: "vivo.lora.rank=2", "unknown fields ['lora.rank']"),
    (lambda r: "device=foo", "'foo' is not a device"),
])
def test_bad_inputs_are_one_line_errors(parts, tmp_path, capsys, make, fragment):
    argv = ["omnivivo", "train", "--config", str(parts["yaml"]), "--out", str(tmp_path / "o"), "--quiet",
            make(parts["root"])]
    code, _, err = run(argv, capsys)
    _assert_one_line(code, err, fragment)
    assert not (tmp_path / "o" / "checkpoints").exists()


def test_a_failed_start_can_be_rerun_in_the_same_directory(parts, tmp_path, capsys):
    argv = ["omnivivo", "train", "--config", str(parts["yaml"]), "--out", str(tmp_path / "o"), "--quiet", "steps=2",
            "save_every=1"]
    code, _, err = run(argv + ["vivo.max_speech_len=4"], capsys)
    _assert_one_line(code, err, "more than vivo.max_speech_len 4")  # after the codes were cached
    code, stdout, err = run(argv, capsys)
    assert code == 0 and json.loads(stdout)["done"], err


def test_run_directory_misuse_is_refused(parts, tmp_path, capsys):
    code, _, err = run(["omnivivo", "train", "--config", str(tmp_path / "no.yaml"), "--out", str(tmp_path)], capsys)
    _assert_one_line(code, err, "no such config file")
    code, _, err = run(["omnivivo", "train", "--out", str(tmp_path / "fresh"), "--resume"], capsys)
    _assert_one_line(code, err, "no checkpoint to resume from (drop --resume")
    code, _, err = run(["omnivivo", "train", "--config", str(parts["yaml"]), "--out", str(tmp_path), "--resume"],
                       capsys)
    _assert_one_line(code, err, "--config cannot be combined with --resume")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    code, _, err = run(["omnivivo", "train", "--config", str(parts["yaml"]), "--out", str(tmp_path / "busy")],
                       capsys)
    _assert_one_line(code, err, "already exists and is not empty (pass --resume")
    code, _, err = run(["omnivivo", "train", "--out", str(tmp_path / "x"), "backbone=b"], capsys)
    _assert_one_line(code, err, "conditioner is not set")
