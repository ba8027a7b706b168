"""``aromni convert`` end to end on tiny files: a chain through every layout keeps the logits, dtype casting,
carried-over HF extras, and refusal to overwrite."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from chameleon_refs import hf_model, tiny_config
from safetensors.torch import load_file

from aromni.cli.main import main
from aromni.models import detect_format, load_decoder

pytest.importorskip("transformers")


@pytest.fixture
def hf_src(tmp_path):
    cfg = tiny_config(swin_norm=True)
    hf_model(cfg, seed=41, shared_qk_norm=True).save_pretrained(tmp_path / "src")
    return cfg, tmp_path


def test_convert_chain_through_every_layout(hf_src, capsys):
    cfg, tmp = hf_src
    tokens = torch.randint(0, cfg.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = load_decoder(tmp / "src")(tokens)
    chain = [("src", "meta", "meta"), ("meta", "anole", "hf-anole"), ("anole", "ours", "aromni"),
             ("ours", "hf", "hf"), ("hf", "meta2", "meta")]
    for src, dst, fmt in chain:
        assert main(["convert", str(tmp / src), str(tmp / dst), "--to", fmt]) == 0
        assert detect_format(tmp / dst) == fmt
        with torch.no_grad():
            assert torch.equal(load_decoder(tmp / dst)(tokens), expected), dst
    assert "-> " in capsys.readouterr().out


def test_hf_to_hf_keeps_vqmodel_and_vocabulary(hf_src):
    _, tmp = hf_src
    assert main(["convert", str(tmp / "src"), str(tmp / "anole"), "--to", "hf-anole"]) == 0
    assert main(["convert", str(tmp / "anole"), str(tmp / "back"), "--to", "hf"]) == 0
    src = load_file(str(tmp / "src" / "model.safetensors"))
    back = load_file(str(tmp / "back" / "model.safetensors"))
    assert set(src) == set(back) and any(k.startswith("model.vqmodel.") for k in back)
    for k in src:
        assert torch.equal(src[k], back[k]), k
    src_cfg, back_cfg = (json.loads((tmp / d / "config.json").read_text()) for d in ("src", "back"))
    assert back_cfg["vocabulary_map"] == src_cfg["vocabulary_map"]
    assert json.loads((tmp / "anole" / "config.json").read_text())["qk_layernorm"] is True


def test_dtype_and_overwrite(hf_src, capsys):
    _, tmp = hf_src
    assert main(["convert", str(tmp / "src"), str(tmp / "out"), "--to", "meta", "--dtype", "bf16"]) == 0
    state = torch.load(tmp / "out" / "consolidated.pth", weights_only=True)
    assert state["layers.0.attention.wq.weight"].dtype == torch.bfloat16
    capsys.readouterr()
    assert main(["convert", str(tmp / "src"), str(tmp / "out"), "--to", "hf"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--overwrite" in err and err.count("\n") == 1
    assert detect_format(tmp / "out") == "meta"  # untouched
    assert main(["convert", str(tmp / "src"), str(tmp / "out"), "--to", "hf", "--overwrite"]) == 0
    assert detect_format(tmp / "out") == "hf" and not (tmp / "out" / "consolidated.pth").exists()


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "out"), "--to", "hf"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such file" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    assert main(["convert", str(tmp_path), str(tmp_path / "o2"), "--to", "hf", "--shards", "2"]) == 2
    assert "--shards" in capsys.readouterr().err


def test_console_script_entry_point(hf_src):
    _, tmp = hf_src
    proc = subprocess.run([sys.executable, "-m", "aromni.cli.main", "convert", str(tmp / "src"), str(tmp / "m"),
                           "--to", "meta", "--shards", "2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp / "m").glob("*.pth")) == ["consolidated.00.pth", "consolidated.01.pth"]
