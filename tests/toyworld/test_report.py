"""The eval report on hand-made results (no model): sections, tables, figures, run discovery, no overwrite."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from aromni.errors import InputError
from aromni.toyworld.evaluation.suite import SuiteResult
from aromni.toyworld.report import find_runs, write_report

ATTRS = {"shape": "circle", "color": "red", "size": "big", "position": "top left", "background": "white"}
BLUE = dict(ATTRS, color="blue")


def _result(asr_wer: float = 0.03) -> SuiteResult:
    info = {"suite": "toy", "bundle": "b", "world": "w", "device": "cpu", "threads": 1, "machine": "x",
            "decoder_params": 1_000_000, "prompt_style": "paper",
            "config": {"split": "test", "seed": 0, "batch_size": 8, "tasks": ["asr", "t2i", "tts"],
                       "limits": {"asr": 2, "t2i": 2, "tts": 1}},
            "seconds": {"asr": 1.0, "t2i": 2.0, "tts": 3.0, "total": 6.0}}
    red = Image.new("RGB", (64, 64), "white")
    wav = torch.sin(torch.arange(16000) / 5.0) * 0.3
    res = SuiteResult(info)
    res.tasks = {
        "asr": {"n": 2, "n_heldout_voices": 2, "wer_heldout_voices": asr_wer, "wer": asr_wer,
                "n_heldout_voices_new_sentences": 2, "wer_heldout_voices_new_sentences": asr_wer},
        "t2i": {"n": 2, "cfg": {"all_correct": 0.5, "attributes": {k: 0.5 for k in ATTRS},
                                "all_correct_heldout_combos": 0.5, "n_heldout_combos": 2},
                "no_cfg": {"all_correct": 0.0, "attributes": {k: 0.0 for k in ATTRS}}},
        "tts": {"n": 1, "wer_generated": 0.10, "wer_resynthesized": 0.04, "wer_ground_truth": 0.02,
                "gap_points": 6.0, "no_speech": 0, "n_new_sentences": 1, "wer_generated_new_sentences": 0.10,
                "wer_resynthesized_new_sentences": 0.04, "gap_points_new_sentences": 6.0},
    }
    res.samples = {"asr": [{"id": "a", "ref": "hello", "hyp": "hello"}], "t2i": [], "tts": []}
    res.examples = {
        "t2i": [{"prompt": "a big red circle", "attributes": ATTRS, "cfg": red, "no_cfg": None, "read_cfg": ATTRS,
                 "read_no_cfg": None, "ground_truth": red},
                {"prompt": "a big blue circle", "attributes": BLUE, "cfg": red, "no_cfg": red, "read_cfg": ATTRS,
                 "read_no_cfg": ATTRS, "ground_truth": red}],
        "tts": [{"text": "hello", "generated": wav, "resynthesized": wav[:8000], "ground_truth": wav,
                 "sample_rate": 16000, "judge_generated": "hello", "judge_resynthesized": "hello"},
                {"text": "silence", "generated": torch.zeros(0), "resynthesized": wav, "ground_truth": wav,
                 "sample_rate": 16000, "judge_generated": "", "judge_resynthesized": "hi"}],
    }
    return res


def test_report_tables_verdicts_and_figures(tmp_path):
    runs = tmp_path / "run"
    runs.mkdir()
    (runs / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s, "ntp": 1 / s}) + "\n"
                                           for s in range(1, 9)))
    out = write_report(_result(), tmp_path / "rep", runs={**find_runs(None, runs), "gone": tmp_path / "no.jsonl"},
                       ablation=[("full", _result()), ("worse", _result(asr_wer=0.2))])
    md = out.read_text()
    # the target rows: ASR passes (3% <= 5%), the TTS gap fails (6 > 5 points) and says so; T2I 50% < 85% fails
    assert "| ASR (S→T) | WER, held-out voices × held-out sentences | 3.0% | ≤ 5.0% | pass | 2 |" in md
    assert "| ASR (S→T) | WER, held-out voices (all sentences) | 3.0% |  |  | 2 |" in md
    assert "| TTS (T→S) | gap on held-out sentences: generated − resynthesised | +6.0 pts | ≤ 5.0 pts | **FAIL** |" in md
    assert "| T2I (T→I) | judge: all 5 correct, held-out combinations, with CFG | 50.0% | ≥ 85.0% | **FAIL** |" in md
    assert "targets met: **1 of 3**" in md
    # tasks not run: "n/a", no verdict
    assert "| Caption (I→T) | all 5 attributes correct | n/a | ≥ 90.0% |  |" in md
    # per-attribute table and the ablation rows
    assert "| T2I with CFG | 50.0% | 50.0% | 50.0% | 50.0% | 50.0% | 50.0% | 50.0% |" in md
    assert "| worse | 20.0% |" in md and "| full | 3.0% |" in md
    assert "Runs: run (" in md and "gone" not in md  # a run without metrics.jsonl is left out
    rep = tmp_path / "rep"
    for png in ("loss.png", "t2i.png", "speech.png"):
        with Image.open(rep / png) as im:
            assert im.format == "PNG"
    assert not (rep / "s2i.png").exists()  # no examples, no figure
    assert sorted(p.name for p in (rep / "audio").iterdir()) == [
        "tts0_generated.wav", "tts0_ground_truth.wav", "tts0_resynthesized.wav",
        "tts1_ground_truth.wav", "tts1_resynthesized.wav"]  # an empty generation writes no file
    data = json.loads((rep / "metrics.json").read_text())
    assert data["targets_met"] == 1 and data["targets_checked"] == 3
    assert [a["name"] for a in data["ablation"]] == ["full", "worse"]
    assert data["ablation"][1]["asr.wer_heldout_voices"] == pytest.approx(0.2)
    with pytest.raises(InputError, match="already exists"):
        write_report(_result(), rep)
    write_report(_result(asr_wer=0.5), rep, overwrite=True)
    assert "50.0%" in (rep / "report.md").read_text()


def test_image_grid_frames_reads(tmp_path):
    from aromni.toyworld.report_figures import describe, image_grid

    assert describe(ATTRS) == "big red circle, top left, on white"
    assert describe(None) == "no image"
    ex = _result().examples["t2i"]
    out = image_grid(ex, [("cfg", "read_cfg"), ("no_cfg", "read_no_cfg")], tmp_path / "g.png", "t")
    with Image.open(out) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
    # green frames (matching reads) and red frames (a wrong read, a missing image) are both drawn
    green = ((a[..., 1] > 100) & (a[..., 0] < 60) & (a[..., 2] < 60)).sum()
    red = ((a[..., 0] > 200) & (a[..., 1] < 60) & (a[..., 2] < 60)).sum()
    assert green > 50 and red > 50


def test_find_runs(tmp_path):
    root = tmp_path / "runs"
    for name in ("pretrain", "sft", "sft/extra", "tokenizer_runs/image"):
        (root / name).mkdir(parents=True)
        key = "psnr" if "tokenizer" in name else "ntp"
        (root / name / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0, key: 1.0}) + "\n")
    # decoder runs only: the VQGAN run logs no "ntp"
    assert sorted(find_runs(None, root)) == ["pretrain", "sft", "sft/extra"]
    with pytest.raises(InputError):
        find_runs(None, tmp_path / "missing")
    # the toy recipe's layout: OUT/bundle next to OUT/pretrain and OUT/sft
    bundle = root / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text("{}")
    assert find_runs(bundle) == {"pretrain": root / "pretrain" / "metrics.jsonl", "sft": root / "sft" / "metrics.jsonl"}
    # `aromni train` exports to OUT/bundle with OUT/metrics.jsonl
    inner = root / "sft" / "bundle"
    inner.mkdir()
    assert find_runs(inner) == {"sft": root / "sft" / "metrics.jsonl", "extra": root / "sft" / "extra" / "metrics.jsonl"}
    # runs recorded in the bundle config, relative to the bundle; missing ones are skipped
    (inner / "config.json").write_text(json.dumps({"runs": {"pre": "../../pretrain", "gone": "../../nothing"}}))
    assert find_runs(inner) == {"pre": inner / "../../pretrain" / "metrics.jsonl"}
    assert find_runs(None) == {}
