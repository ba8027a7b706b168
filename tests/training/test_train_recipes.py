"""End to end through the CLI: pretrain -> bundle -> SFT, ablation switches, plots, errors."""

import json

import numpy as np
import pytest
import torch
from training_helpers import tiny_overrides

from aromni.bundle import Bundle
from aromni.cli.main import main
from aromni.models import load_decoder
from aromni.training.metrics import read_metrics


def test_pretrain_learns_exports_a_bundle_and_sft_continues_from_it(synth_dir, tmp_path, capsys):
    pre = tmp_path / "pre"
    args = tiny_overrides(synth_dir, pre, **{"optim.max_steps": 30, "optim.lr": 1e-2, "checkpoint.every": 10,
                                             "export.text": str(synth_dir / "text_tokenizer"),
                                             "log.tensorboard": True, "eval.every": 10, "log.every": 10})
    capsys.readouterr()
    assert main(["train", "pretrain", *args]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("step ")]  # no bar: a line per log.every
    assert [x.split(":")[0] for x in lines] == ["step 10", "step 20", "step 30"] and all(" val " in x for x in lines)
    recs = read_metrics(pre / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(1, 31))
    first, last5 = recs[0]["ntp"], np.mean([r["ntp"] for r in recs[-5:]])
    assert last5 < first - 1.0  # the synthetic corpus is learnable: NTP drops by > 1 nat in 30 steps
    assert all(0 <= r["tail_ratio"] < 1 for r in recs) and sum(r["tail_ratio"] > 0 for r in recs) > 15
    assert sum(r["perc_positions"] > 0 for r in recs) > 15
    assert recs[0]["lr"] < recs[3]["lr"] and recs[-1]["lr"] < recs[10]["lr"]  # warmup, then decay
    val = [r for r in recs if "val_loss" in r]
    assert [r["step"] for r in val] == [10, 20, 30] and val[-1]["val_ntp"] < val[0]["val_ntp"]
    assert all(r["val_loss"] == pytest.approx(r["val_ntp"] + r["val_perc"]) for r in val)
    assert list((pre / "tensorboard").glob("events.*"))
    bundle = Bundle.load(pre / "bundle")
    assert bundle.text is not None and bundle.layout.vocab_size == bundle.decoder.cfg.vocab_size
    final = load_decoder(pre / "checkpoints" / "step-00000030")
    for (k, v), w in zip(final.state_dict().items(), bundle.decoder.state_dict().values()):
        assert torch.equal(v, w), k

    sft = tmp_path / "sft"
    args = tiny_overrides(synth_dir, sft, **{"model.init_from": str(pre / "bundle"), "optim.max_steps": 3,
                                             "export.tokenizers_from": str(pre / "bundle")})
    args = [a for a in args if not a.startswith("model.decoder=")]
    capsys.readouterr()
    assert main(["train", "sft", *args]) == 0
    out = capsys.readouterr()
    assert f"'init': '{pre / 'bundle'}'" in out.err
    assert f"'perceptual': 'W_h from {pre / 'bundle'}'" in out.err  # W_h carried over from stage 1
    last = json.loads(out.out.strip().splitlines()[-1])
    assert last["step"] == 3 and last["tail_ratio"] == 0.0
    # SFT counts response targets only: far fewer than the non-padding positions.
    assert all(r["tokens"] > 0 for r in read_metrics(sft / "metrics.jsonl"))
    assert Bundle.load(sft / "bundle").text is not None


def test_ablation_switches(synth_dir, tmp_path):
    out = tmp_path / "abl"
    args = tiny_overrides(synth_dir, out, **{"optim.max_steps": 2, "loss.weighted_ntp": False,
                                             "perceptual.enabled": False, "model.swin_norm": False,
                                             "export.enabled": False})
    assert main(["train", "pretrain", *args]) == 0
    recs = read_metrics(out / "metrics.jsonl")
    assert all(r["tail_ratio"] == 0.0 and r["perc"] is None and r["loss"] == r["ntp"] for r in recs)
    assert not load_decoder(out / "checkpoints" / "step-00000002").cfg.swin_norm
    assert not (out / "checkpoints" / "step-00000002" / "perceptual.safetensors").exists()
    # A fresh start into a directory that holds a run is refused (never overwrite a run silently).
    assert main(["train", "pretrain", *args, "checkpoint.resume=none"]) == 2


def test_plot_and_print_config_and_errors(synth_dir, tmp_path, capsys):
    recs = [{"step": i, "loss": 5 - i * 0.1, "ntp": 4.9 - i * 0.1, "perc": 0.1} for i in range(1, 40)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"step": 40, "lo')
    assert main(["plot", str(tmp_path / "metrics.jsonl"), "--out", str(tmp_path / "loss.png")]) == 0
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["train", "sft", "--print-config", "data.root=x"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"]["mode"] == "sft"
    assert main(["train", "pretrain", f"data.root={tmp_path / 'nope'}"]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert main(["train", "pretrain", "optim.nope=1"]) == 2
    assert main(["train", "pretrain", *tiny_overrides(synth_dir, tmp_path / "x", **{"perceptual.table": ""})]) == 2
    assert "perceptual.table is not set" in capsys.readouterr().err
