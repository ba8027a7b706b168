"""The OmniVIVO chain end to end through the CLI, at the smallest size, with the README's own paths.

The README ("OmniVIVO") documents the chain, all run from one directory: a world in ``runs/world``;
``llamagen vq-train`` (``--images runs/world/images/train``, toy_vq.yaml) into ``runs/omnivivo/vq_toy``;
``llamagen t2i-train`` (toy_t2i.yaml) into ``runs/omnivivo/t2i_run``; ``toyworld speech-manifest`` into
``runs/omnivivo/speech``; ``omnivivo train`` (toy_speech.yaml) into ``runs/omnivivo/speech_toy``; ``vivo PROMPT``;
``omnivivo eval`` and ``omnivivo ablate``.

This test runs them in a temporary working directory with the shipped configs, overriding only sizes and
schedules (never an input path), so each stage must find the previous one's output where the configs say
it is. The speech stage's codec is toy_speech.yaml's default (``runs/codec_toy/tokenizer``, which the README
replaces by the shipped AR-Omni toy codec): the test trains it with ``aromni codec train``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from aromni.cli.main import main

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "omnivivo"
PROMPT = "a red circle at the top left"

# Size and schedule overrides only: every input path comes from the config files.
SCHEDULE = ["steps=2", "warmup_steps=1", "log_every=1", "eval_every=2", "threads=1"]
VQ_SMOKE = [*SCHEDULE, "batch_size=2", "judge_images=0", "val_images=4", "save_every=2"]
T2I_SMOKE = [*SCHEDULE, "batch_size=4", "judge_images=0", "max_val_pairs=4", "save_every=2"]
CODEC_SMOKE = [*SCHEDULE, "preset=tiny", "batch_size=2", "segment_frames=8", "kmeans_batches=2",
               "kmeans_iters=2", "checkpoint_every=100", "val_files=2"]
# toy_speech.yaml averages its last 5 scheduled checkpoints (keep_last 6): 5 steps, one saved each step.
SPEECH_SMOKE = ["steps=5", "save_every=1", "batch_size=2", "log_every=1", "eval_every=5", "threads=1"]


def _run(*argv: str) -> None:
    assert main(list(argv)) == 0, argv


def _speech_manifest(world: Path, split: str, out: Path) -> list[str]:
    """The expected manifest lines, written out independently: the world's TTS records -> ``{"text", "audio"}``
    lines, audio relative to the manifest's directory."""
    lines = []
    for line in (world / "records" / f"{split}.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["task"] != "tts":
            continue
        for seg in record["turns"][-1]["segments"]:
            if seg["type"] == "speech":
                audio = os.path.relpath(world / seg["path"], out.parent)
                lines.append(json.dumps({"text": seg["transcript"], "audio": audio}))
    return lines


@pytest.mark.slow
def test_readme_chain_runs_end_to_end_at_smoke_size(tmp_path, monkeypatch):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): the toy world cannot speak")
    monkeypatch.chdir(tmp_path)  # the README's relative paths (runs/...) start here, as the configs assume
    runs = Path("runs")

    # 1. the world (smoke instead of full)
    _run("toyworld", "build", "--size", "smoke", "--version", "1", "--out", "runs/world", "--workers", "1")
    assert (runs / "world" / "images" / "train").is_dir()

    # 2. the VQ, on the README's --images
    _run("llamagen", "vq-train", "--images", "runs/world/images/train",
         "--config", str(CONFIGS / "toy_vq.yaml"), "--out", "runs/omnivivo/vq_toy", "--quiet", *VQ_SMOKE)
    vq = runs / "omnivivo" / "vq_toy" / "tokenizer"
    vq_meta = json.loads((vq / "config.json").read_text())["metadata"]

    # 3. the T2I backbone: world and vq from toy_t2i.yaml (runs/world, runs/omnivivo/vq_toy/tokenizer)
    _run("llamagen", "t2i-train", "--config", str(CONFIGS / "toy_t2i.yaml"), "--out", "runs/omnivivo/t2i_run",
         "--quiet", *T2I_SMOKE)
    t2i = json.loads((runs / "omnivivo" / "t2i_run" / "summary.json").read_text())
    assert Path(t2i["vq"]).resolve() == vq.resolve()

    # 3b. the speech inputs toy_speech.yaml names but no README command writes
    _run("codec", "train", "--audio", "runs/world/speech/train", "--out", "runs/codec_toy", "--quiet",
         *CODEC_SMOKE)
    _run("toyworld", "speech-manifest", "--world", "runs/world", "--out", "runs/omnivivo/speech")
    for name, split in (("train.jsonl", "train"), ("val.jsonl", "validation")):
        written = (runs / "omnivivo" / "speech" / name).read_text().splitlines()
        assert written and written == _speech_manifest(runs / "world", split, runs / "omnivivo" / "speech" / name)
    # the manifests are not replaced silently
    assert main(["toyworld", "speech-manifest", "--world", "runs/world", "--out", "runs/omnivivo/speech"]) == 2

    # 4. the speech stage: backbone, conditioner, codec and manifests all from toy_speech.yaml's defaults
    _run("omnivivo", "train", "--config", str(CONFIGS / "toy_speech.yaml"),
         "--out", "runs/omnivivo/speech_toy", "--quiet", *SPEECH_SMOKE)
    speech = json.loads((runs / "omnivivo" / "speech_toy" / "summary.json").read_text())
    assert speech["step"] == 5 and len(speech["averaged"]) == 5
    export = runs / "omnivivo" / "speech_toy" / "omnivivo"
    assert Path(speech["export"]).resolve() == export.resolve()

    # 5. one prompt -> image + speech
    _run("vivo", PROMPT, "--model", str(export), "--vq", str(vq), "--out", "out/", "--threads", "1")
    out = Path("out")
    for name in ("vivo.png", "vivo.wav", "vivo.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    record = json.loads((out / "vivo.json").read_text())
    assert record["prompt"] == PROMPT and record["type"] == "aromni_vivo"
    assert len(record["image_codes"]) == vq_meta["codes_per_image"]
    assert len(record["speech_codes"]) > 0 and record["audio_seconds"] > 0

    from PIL import Image

    with Image.open(out / "vivo.png") as im:
        assert im.size == (vq_meta["image_size"], vq_meta["image_size"])

    import soundfile as sf

    codec = json.loads((runs / "codec_toy" / "tokenizer" / "config.json").read_text())
    codec_rate = codec["config"]["sample_rate"]
    info = sf.info(str(out / "vivo.wav"))
    assert info.samplerate == record["sample_rate"] == codec_rate and info.frames > 0

    # 6. the toy measurement on the world's test split (DNSMOS on one clip, no AR-Omni bundle beside)
    _run("omnivivo", "eval", "--model", str(export), "--vq", str(vq), "--world", "runs/world", "--out", "eval",
         "--images", "3", "--sentences", "2", "--dnsmos", "1", "--aromni-bundle", "none", "--batch-size", "2",
         "--threads", "1", "--json")
    report = json.loads(Path("eval/report.json").read_text())
    images = report["images"]
    assert images["n"] == 3 and images["codes_identical_rows"] == 3  # preservation, measured on the real chain
    assert images["joint_accuracy"] == images["backbone_alone_accuracy"]
    for name in ("joint", "ground_truth"):
        for attr, score in images["inception_analogue"][name].items():
            assert 1.0 - 1e-6 <= score <= images["inception_analogue"]["classes"][attr] + 1e-6
    assert report["coherence"]["n"] == 3 and report["speech"]["n"] == 2
    assert set(report["speech"]["judge_wer"]) == {"generated", "ground_truth", "codec_resynthesised"}
    assert set(report["speech"]["dnsmos"]) == {"omnivivo", "ground_truth"}
    assert 1.0 <= report["speech"]["dnsmos"]["ground_truth"]["ovrl"] <= 5.0
    assert Path("eval/grid.png").is_file() and "## Images" in Path("eval/report.md").read_text()

    # 7. the depth x LoRA table (one depth, both LoRA options), then a second call reads the finished cells back
    ablate = ["omnivivo", "ablate", "--config", str(CONFIGS / "toy_speech.yaml"), "--world", "runs/world",
              "--out", "ablate", "--depths", "1", "--sentences", "2", "--quiet", *SPEECH_SMOKE]
    _run(*ablate)
    table = json.loads(Path("ablate/table.json").read_text())
    assert [(r["depth"], r["lora"], r["steps"]) for r in table["rows"]] == [(1, True, 5), (1, False, 5)]
    with_lora, without = table["rows"]
    assert without["trainable_parameters"] < with_lora["trainable_parameters"]  # the adapters are gone
    assert not (Path("ablate/depth1_nolora/omnivivo/adapter")).exists()
    assert (Path("ablate/depth1_lora/omnivivo/adapter/adapter_config.json")).is_file()
    for r in table["rows"]:
        assert r["val_loss"] is not None and 0.0 <= r["judge_cer"] and r["n"] == 2
    stamp = Path("ablate/depth1_lora/summary.json").stat().st_mtime_ns
    _run(*ablate)
    assert Path("ablate/depth1_lora/summary.json").stat().st_mtime_ns == stamp  # read back, not retrained
    assert "| 1 |" in Path("ablate/table.md").read_text()
