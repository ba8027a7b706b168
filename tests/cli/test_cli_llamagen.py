"""``aromni llamagen vq-train`` / ``t2i-train``: the shipped configs run end to end (shrunk by key=value), a run is
resumed and extended, an existing run is never overwritten by accident, and every bad input is one error line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cliparts import run
from PIL import Image

from aromni.omnivivo.t2i_checkpoint import load_t2i
from aromni.omnivivo.toy_conditioner import ToyTextConditioner
from aromni.tokenizers.image.llamagen_vq import LlamaGenVQ
from aromni.training.loop import checkpoint_meta

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "omnivivo"
# The shipped toy configs shrunk to a few CPU steps: a 16-px VQ with 4x4 codes, a 2-block backbone.
VQ_TINY = ["model.encoder_ch_mult=[1,1,2]", "model.decoder_ch_mult=[1,1,2]", "model.z_channels=32",
           "model.num_res_blocks=1", "model.codebook_size=32", "model.image_size=16", "color_patch=4",
           "judge_images=0", "val_images=1", "steps=3", "batch_size=4", "warmup_steps=1", "eval_every=3",
           "save_every=2"]
T2I_TINY = ["world=", "model.n_layer=2", "text_layers=1", "text_vocab_size=300", "judge_images=0", "steps=2",
            "batch_size=4", "warmup_steps=1", "eval_every=2", "save_every=2"]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    """Four 16-px PNGs and a manifest captioning them."""
    root = tmp_path_factory.mktemp("pics")
    rows = []
    for i, rgb in enumerate([(220, 30, 30), (30, 200, 60), (40, 60, 230), (240, 220, 40)]):
        a = np.full((16, 16, 3), 90, np.uint8)
        a[4:12, 4:12] = rgb
        Image.fromarray(a).save(root / f"{i}.png")
        rows.append({"text": f"square number {i}", "image": f"{i}.png"})
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _summary(out: str) -> dict[str, object]:
    return json.loads(out.strip().splitlines()[-1])


def test_vq_then_t2i_from_the_shipped_configs_with_resume(tmp_path, pictures, capsys):
    vq_out = tmp_path / "vq"
    code, out, err = run(["llamagen", "vq-train", "--images", str(pictures / "*.png"), "--config",
                          str(CONFIGS / "toy_vq.yaml"), "--out", str(vq_out), "--quiet", *VQ_TINY], capsys)
    assert code == 0, err
    assert _summary(out)["step"] == 3 and _summary(out)["done"]
    code, out, err = run(["llamagen", "vq-train", "--out", str(vq_out), "--resume", "--quiet", "steps=5"], capsys)
    assert code == 0, err
    assert _summary(out)["step"] == 5 and checkpoint_meta(vq_out)["config"]["steps"] == 5
    vq = LlamaGenVQ.from_pretrained(vq_out / "tokenizer")
    assert vq.grid == (4, 4) and vq.codebook_size == 32

    t2i_out = tmp_path / "t2i"
    code, out, err = run(["llamagen", "t2i-train", "--config", str(CONFIGS / "toy_t2i.yaml"), "--out", str(t2i_out),
                          "--quiet", f"manifest={pictures / 'm.jsonl'}", f"vq={vq_out / 'tokenizer'}", *T2I_TINY],
                         capsys)
    assert code == 0, err
    summary = _summary(out)
    assert summary["done"] and summary["train_pairs"] == 4 and summary["val_pairs"] == 0
    assert load_t2i(summary["backbone"]).cfg.block_size == 16
    assert ToyTextConditioner.from_pretrained(summary["text"]).dim == 64
    code, out, err = run(["llamagen", "t2i-train", "--out", str(t2i_out), "--resume", "--quiet", "steps=3"], capsys)
    assert code == 0, err
    assert _summary(out)["step"] == 3


def test_overwrite_starts_again(tmp_path, pictures, capsys):
    out_dir = tmp_path / "vq"
    args = ["llamagen", "vq-train", "--images", str(pictures), "--out", str(out_dir), "--quiet", *VQ_TINY]
    assert run(args, capsys)[0] == 0
    (out_dir / "notes.txt").write_text("mine")
    code, out, err = run([*args[:-len(VQ_TINY)], "--overwrite", *VQ_TINY[:-4], "steps=1", "batch_size=2",
                          "warmup_steps=0", "eval_every=1", "save_every=1"], capsys)
    assert code == 0, err
    assert _summary(out)["step"] == 1 and [p.name for p in (out_dir / "checkpoints").iterdir()] == ["step-00000001"]
    assert (out_dir / "notes.txt").read_text() == "mine"  # --overwrite deletes only the run's own files


def test_bad_inputs_are_one_line_errors(tmp_path, pictures, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    vq = ["llamagen", "vq-train", "--quiet"]
    t2i = ["llamagen", "t2i-train", "--quiet"]
    cases = [
        ([*vq, "--out", str(tmp_path / "a")], "--images is required for a new run"),
        ([*vq, "--images", str(tmp_path / "none*.png"), "--out", str(tmp_path / "b")], "no images found"),
        ([*vq, "--images", str(pictures), "--out", str(used), *VQ_TINY], "already exists and is not empty"),
        ([*vq, "--out", str(tmp_path / "c"), "--resume"], "no checkpoint to resume from"),
        ([*vq, "--images", str(pictures), "--out", str(tmp_path / "d"), "steps"], "is not key=value"),
        ([*vq, "--images", str(pictures), "--out", str(tmp_path / "e"), "steps=-1"], "steps must be positive"),
        ([*vq, "--images", str(pictures), "--out", str(tmp_path / "f"), "--config", str(tmp_path / "no.yaml")],
         "no such config file"),
        ([*t2i, "--out", str(tmp_path / "g"), "vq=v"], "give exactly one of world and manifest"),
        ([*t2i, "--out", str(tmp_path / "h"), f"manifest={pictures / 'm.jsonl'}", f"vq={tmp_path / 'novq'}"],
         "no such tokenizer directory"),
        ([*t2i, "--out", str(tmp_path / "i"), f"world={tmp_path / 'noworld'}", "vq=v"], "no such file"),
        ([*t2i, "--out", str(tmp_path / "j"), "--resume", "lr=1"], "no checkpoint to resume from"),
    ]
    for argv, message in cases:
        code, _, err = run(argv, capsys)
        assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], (argv, err)


def test_resume_refuses_changes_the_checkpoint_cannot_take(tmp_path, pictures, capsys):
    out_dir = tmp_path / "vq"
    assert run(["llamagen", "vq-train", "--images", str(pictures / "*.png"), "--out", str(out_dir), "--quiet",
                *VQ_TINY], capsys)[0] == 0
    for argv, message in [(["lr=0.5"], "cannot change ['lr'] when resuming"),
                          (["--images", str(pictures)], "differs from the run's"),
                          (["--config", str(CONFIGS / "toy_vq.yaml")], "--config cannot be combined with --resume")]:
        code, _, err = run(["llamagen", "vq-train", "--out", str(out_dir), "--resume", "--quiet", *argv], capsys)
        assert code == 2 and len(err) == 1 and message in err[0], (argv, err)
