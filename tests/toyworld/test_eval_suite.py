"""The eval suite end to end on a tiny random bundle and the smoke world: prompts equal the training encoding,
the CLI writes a report with every section and valid JSON, and the speech-output paths get real audio."""

from __future__ import annotations

import json

import pytest
from evalparts import bundle_fixture, speaking_model  # noqa: F401 (fixtures)

from aromni.cli.main import main
from aromni.toyworld.evaluation import TASKS, SuiteConfig, run_suite
from aromni.toyworld.evaluation.targets import ROWS


def test_prompts_equal_the_training_encoding(bundle, smoke_world, tmp_path):
    """Every test record's prompt (each user turn, with the record's own history) equals the ids the data
    builder wrote for that record, up to where the assistant's response starts."""
    import numpy as np

    import aromni
    from aromni.toyworld.evaluation.prompts import MediaEncoder, record_prompt
    from aromni.toyworld.records import iter_records
    from aromni.training.data.build import BuildConfig, build
    from aromni.training.data.shards import ShardDataset

    cfg = BuildConfig.from_dict({"bundle": str(bundle), "workers": 1, "max_len": 4096,
                                 "sources": [{"type": "dialogs", "paths": str(smoke_world / "records/test.jsonl")}]})
    build(cfg, out=tmp_path / "shards", progress=False)
    shards = ShardDataset(tmp_path / "shards", "test")
    by_id = {s.source.rsplit("id=", 1)[1]: s for s in shards}
    model = aromni.load(bundle)
    media = MediaEncoder(model, smoke_world)
    checked = 0
    for rec in iter_records(smoke_world, "test"):
        if rec["turns"][0]["role"] != "user":
            continue  # text documents have no prompt
        sample = by_id[rec["id"]]
        # response runs start where is_response switches on
        starts = np.nonzero(sample.response & ~np.r_[False, sample.response[:-1]])[0]
        for k, start in enumerate(starts):
            assert record_prompt(model, rec, media, user_turn=k) == sample.ids[:start].tolist(), (rec["id"], k)
            checked += 1
    assert checked >= 60


def test_cli_report_json_and_ablation(bundle, smoke_world, tmp_path, capsys):
    from PIL import Image

    runs = tmp_path / "runs"
    for name in ("pretrain", "sft"):
        (runs / name).mkdir(parents=True)
        (runs / name / "metrics.jsonl").write_text(
            "".join(json.dumps({"step": s, "loss": 5.0 / s, "ntp": 4.0 / s}) + "\n" for s in range(1, 30)))
    report = tmp_path / "report"
    argv = ["eval", "--model", str(bundle), "--world", str(smoke_world), "--limit", "2", "--report", str(report),
            "--runs", str(runs), "--json", "--quiet", "--seed", "3", "--ablation", f"again={bundle}"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["tasks"]) == set(TASKS)
    assert len(data["summary"]) == len(ROWS)
    assert all(set(r) >= {"task", "metric", "value", "target", "pass", "n"} for r in data["summary"])
    assert data["tasks"]["asr"]["n"] == 2 and data["tasks"]["t2i"]["n"] == 2
    assert data["config"]["seed"] == 3
    assert [a["name"] for a in data["ablation"]] == ["tiny", "again"]
    # the same bundle, seed and inputs give the same numbers
    a, b = data["ablation"]
    assert {k: v for k, v in a.items() if k not in ("name", "streaming.median_rtf")} == \
           {k: v for k, v in b.items() if k not in ("name", "streaming.median_rtf")}

    md = (report / "report.md").read_text()
    for section in ("## Metrics and targets", "## Accuracy per attribute", "## Streaming TTS latency",
                    "## Judge sanity", "## Ablation", "## Training curves", "## Text to image", "## Speech to image",
                    "## Two-turn chat", "## Speech (log-mel", "## VQGAN", "## Samples"):
        assert section in md, section
    assert "**FAIL**" in md  # a random model misses its targets, and the report says so
    for png in ("loss.png", "t2i.png", "s2i.png", "chat.png", "speech.png", "vqgan.png"):
        with Image.open(report / png) as im:
            assert im.format == "PNG" and im.size[0] > 100, png
        assert f"({png})" in md
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["tasks"].keys() == data["tasks"].keys()
    samples = [json.loads(line) for line in (report / "samples.jsonl").read_text().splitlines()]
    assert {s["task"] for s in samples} >= {"asr", "tts", "caption", "t2i", "chat_image", "streaming"}
    # an existing report is never replaced silently
    assert main(argv[:-2]) == 2
    assert "already exists" in capsys.readouterr().err


def test_speech_outputs_are_judged_and_timed(bundle, smoke_world):
    """With a decoder biased to speak, generated speech reaches the judge and the streaming clock."""
    model = speaking_model(bundle)
    res = run_suite(model, smoke_world, SuiteConfig(limits=2, tasks=("tts", "vqa_speech", "streaming"),
                                                   progress=False), log=lambda s: None)
    tts, stream = res.tasks["tts"], res.tasks["streaming"]
    assert tts["no_speech"] == 0 and tts["seconds_generated"] > 0
    assert tts["gap_points"] == pytest.approx(100 * (tts["wer_generated"] - tts["wer_resynthesized"]))
    assert res.tasks["vqa_speech"]["no_speech"] == 0
    assert stream["n"] == 2 and stream["with_speech"] == 2
    for row in res.samples["streaming"]:
        assert 0 < row["first_speech_token"] <= row["ftl"] <= row["total"]
        assert row["rtf"] == pytest.approx(row["total"] / row["audio_seconds"])
    assert len(res.examples["tts"]) == 2 and res.examples["tts"][0]["generated"].numel() > 0


def test_bad_inputs_are_one_line_errors(bundle, smoke_world, tmp_path, capsys):
    assert main(["eval", "--model", str(bundle), "--world", str(tmp_path)]) == 2
    assert "not a toy world" in capsys.readouterr().err
    assert main(["eval", "--model", str(bundle), "--world", str(smoke_world), "--tasks", "asr,poetry"]) == 2
    assert "unknown eval tasks" in capsys.readouterr().err
    assert main(["eval", "--model", str(bundle), "--world", str(smoke_world), "--ablation", "nobundle"]) == 2
    assert "NAME=BUNDLE" in capsys.readouterr().err
