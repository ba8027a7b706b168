import collections
import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aromni.errors import CheckpointError
from aromni.toyworld import grammar
from aromni.toyworld.attributes import ATTRIBUTE_NAMES
from aromni.toyworld.judges.augment import augment_image, augment_logmel, spec_augment
from aromni.toyworld.judges.image import ImageJudge, ImageJudgeConfig, ImageJudgeModel
from aromni.toyworld.judges.image_data import render_set
from aromni.toyworld.judges.speech import (
    SpeechJudge,
    SpeechJudgeConfig,
    SpeechJudgeModel,
    greedy_decode,
    pad_batch,
)
from aromni.toyworld.judges.store import default_judge_dir
from aromni.toyworld.judges.wer import wer

ASSETS = Path(__file__).parent / "assets"


def test_wer():
    assert wer(["a b c", "d"], ["a b c", "d"]) == 0.0
    assert wer(["a b c d"], ["a x c"]) == pytest.approx(2 / 4)  # one substitution, one deletion
    assert wer(["a b"], ["a b c d"]) == pytest.approx(1.0)  # two insertions
    with pytest.raises(ValueError):
        wer(["a"], [])


def test_greedy_ctc_collapses_repeats_and_blanks():
    words = ["red", "circle"]
    seq = [0, 1, 1, 0, 1, 2, 2, 0, 0]  # red red(after blank) circle
    logp = torch.nn.functional.one_hot(torch.tensor([seq]), 3).float().log()
    assert greedy_decode(logp, torch.tensor([len(seq)]), words) == ["red red circle"]
    assert greedy_decode(logp, torch.tensor([3]), words) == ["red"]


def test_speech_model_output_does_not_depend_on_batching():
    torch.manual_seed(0)
    model = SpeechJudgeModel(SpeechJudgeConfig(words=grammar.spoken_vocabulary())).eval()
    clips = [torch.randn(n) * 0.1 for n in (40000, 23457, 16160, 9000)]
    wav, lengths = pad_batch(clips)
    logp, out_len = model(wav, lengths)
    for j, c in enumerate(clips):
        one, n = model(c[None], torch.tensor([len(c)]))
        assert int(n[0]) == int(out_len[j])
        torch.testing.assert_close(logp[j, : out_len[j]], one[0, : n[0]], atol=1e-5, rtol=1e-4)


def test_epoch_batches_repeat_clips_and_keep_the_frame_budget():
    from aromni.training.recipes.judge_speech import _batches

    rng = random.Random(0)
    lengths = [rng.randint(50, 400) for _ in range(300)]
    repeats = [1] * 200 + [3] * 90 + [12] * 10
    batches = _batches(lengths, 2000, random.Random(1), repeats)
    counts = collections.Counter(i for b in batches for i in b)
    assert [counts[i] for i in range(300)] == repeats
    assert all(len(b) * max(lengths[i] for i in b) <= 2000 for b in batches if len(b) > 1)
    # the copies of a repeated clip land in different batches
    assert all(len(set(b)) == len(b) for b in batches)


def test_reply_clips_are_repeated(smoke_world):
    from aromni.toyworld.judges.speech_data import clip_repeats, reply_paths, speech_rows
    from aromni.toyworld.records import iter_records
    from aromni.training.recipes.judge_speech import SpeechTrainConfig

    replies = reply_paths(smoke_world, "train")
    expected = {seg["path"] for r in iter_records(smoke_world, "train") if r["task"] in ("vqa_speech", "s2s")
                for seg in r["turns"][1]["segments"] if seg["type"] == "speech"}
    assert expected and expected <= replies
    rows = speech_rows(smoke_world, "train")
    roles = {r["path"]: r["role"] for r in rows}
    assert {roles[p] for p in replies} == {"assistant"}
    reps = clip_repeats(rows, replies, SpeechTrainConfig(assistant_repeat=2, reply_repeat=7))
    for r, k in zip(rows, reps):
        assert k == (7 if r["path"] in replies else 2 if r["role"] == "assistant" else 1)


def test_judge_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    judge = SpeechJudge(SpeechJudgeModel(SpeechJudgeConfig(words=["red", "blue"])))
    judge.save(tmp_path / "s", {"val_wer": 0.5})
    again = SpeechJudge.load(tmp_path / "s")
    assert again.cfg.words == ["red", "blue"]
    for k, v in judge.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[k], v.half().float())
    ImageJudge(ImageJudgeModel(ImageJudgeConfig()).eval()).save(tmp_path / "i")
    with pytest.raises(CheckpointError):
        SpeechJudge.load(tmp_path / "i")  # wrong type


def test_augmentations_keep_shapes_and_ranges():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(8, 3, 64, 64)
    for _ in range(5):
        out = augment_image(img, g)
        assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1
    m = torch.randn(4, 64, 120) - 4
    n = torch.tensor([120, 100, 80, 50])
    for _ in range(10):
        out, n2 = augment_logmel(m, n, g)
        assert out.shape[:2] == (4, 64) and torch.isfinite(out).all()
        assert (n2 >= 1).all() and (n2 <= out.shape[-1]).all()
        assert spec_augment(out, g).shape == out.shape


# ---- the shipped judges -------------------------------------------------------------------------------------

def _shipped(name):
    return pytest.mark.skipif(not (default_judge_dir(name) / "model.safetensors").is_file(),
                              reason=f"no shipped {name} judge in this checkout")


shipped_image, shipped_speech = _shipped("image"), _shipped("speech")


@shipped_image
def test_shipped_image_judge_reads_fresh_ground_truth():
    images, labels = render_set(300, "test-fresh-renders")
    judge = ImageJudge.load()
    reads = judge.read(images.float() / 255)
    ok = np.array([[r[k] == judge.cfg.classes[k][int(labels[k][i])] for k in ATTRIBUTE_NAMES]
                   for i, r in enumerate(reads)])
    assert ok.mean(0).min() >= 0.98, ok.mean(0)
    assert ok.all(1).mean() >= 0.97


@shipped_image
def test_shipped_image_judge_reads_pil_and_files(smoke_world):
    from aromni.toyworld.records import read_jsonl

    rows = read_jsonl(smoke_world / "images.jsonl")
    reads = ImageJudge.load().read_files([smoke_world / r["path"] for r in rows])
    correct = sum(read == r["attrs"] for read, r in zip(reads, rows))
    assert correct >= 0.95 * len(rows)


@shipped_speech
def test_shipped_speech_judge_on_unseen_voices():
    from aromni.tokenizers.speech.audio_io import load_audio

    rows = json.loads((ASSETS / "unseen_voices.json").read_text())
    judge = SpeechJudge.load()
    hyps = judge.transcribe([load_audio(ASSETS / r["path"], 16000) for r in rows])
    # Measured 2/42 word errors (4.8%) with the shipped judge (4/42 with the previous one); short answers from
    # unseen voices are the hard case.
    assert wer([r["transcript"] for r in rows], hyps) <= 0.15, hyps


@shipped_speech
def test_shipped_speech_judge_on_fresh_espeak_sentences():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from aromni.toyworld.attributes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES, ImageAttrs
    from aromni.toyworld.voices import synthesize, voice_bank

    _, test_voices = voice_bank(0)
    rng = random.Random(123)
    refs, wavs = [], []
    for i in range(12):
        a = ImageAttrs(rng.choice(SHAPES), rng.choice(list(COLORS)), rng.choice(list(SIZES)),
                       rng.choice(list(POSITIONS)), rng.choice(list(BACKGROUNDS)))
        text = grammar.spoken_description(a, rng) if i % 2 else grammar.image_question(a, rng)[1]
        refs.append(text)
        wavs.append(synthesize(text, test_voices[i % len(test_voices)]))
    hyps = SpeechJudge.load().transcribe(wavs)
    assert wer(refs, hyps) <= 0.12, list(zip(refs, hyps))


# Spoken replies of every kind the evaluation scores (I+S→S, S→S, chat), spoken by the assistant voice.
REPLIES = ("it is pink", "it is a circle", "it is big", "it is at the top left", "it is in the middle",
           "the background is white", "i made it small", "i put it at the bottom right", "i drew a star",
           "a gray background", "the opposite of left is right", "a star has ten corners", "yes pink is a color",
           "no a cross is a shape", "you are welcome", "it is yellow")


@shipped_speech
def test_shipped_speech_judge_reads_short_assistant_replies():
    """The world stores one clip per reply sentence, so the shipped judge trained on the exact clips; these are new
    renditions (the assistant voice 10 wpm faster/slower and 6 pitch steps higher/lower) that no world clip has."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from aromni.toyworld.voices import ASSISTANT_VOICE, synthesize

    cases = [(t, (-10, 10)[i % 2], (6, -6)[i // 2 % 2]) for i, t in enumerate(REPLIES)]
    wavs = [synthesize(t, ASSISTANT_VOICE, speed_jitter=ds, pitch_jitter=dp) for t, ds, dp in cases]
    hyps = SpeechJudge.load().transcribe(wavs)
    wrong = [(t, h) for t, h in zip(REPLIES, hyps) if t != h]
    # The judge shipped before spoken replies were repeated in training read 3 of these 16 right.
    assert len(wrong) <= 1, wrong


@shipped_image
@shipped_speech
def test_cli_judges_eval(smoke_world, capsys):
    from aromni.cli.main import main

    assert main(["toyworld", "judges", "eval", "--world", str(smoke_world)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["speech"]["clips"] > 0 and 0 <= report["speech"]["wer"] <= 0.2
    assert report["speech"]["reply_clips"] > 0 and report["speech"]["replies_exact"] >= 0.9
    fresh = report["speech_fresh_replies"]
    assert fresh["renditions"] == 4 * fresh["sentences"] and 0 <= fresh["exact"] <= 1
    assert report["image"]["accuracy"]["all"] >= 0.9


def test_trainers_run_save_and_resume(smoke_world, tmp_path):
    from aromni.training.recipes.judge_image import ImageTrainConfig, train_image_judge
    from aromni.training.recipes.judge_speech import SpeechTrainConfig, train_speech_judge

    cfg = ImageTrainConfig(steps=2, batch_size=8, train_images=16, val_images=8, save_every=1)
    m = train_image_judge(tmp_path / "image", cfg, progress=False)
    assert m["steps"] == 2 and ImageJudge.load(tmp_path / "image").cfg.image_size == 64
    m = train_image_judge(tmp_path / "image", ImageTrainConfig(steps=3, batch_size=8, train_images=16, val_images=8),
                          progress=False)
    assert m["steps"] == 3  # resumed from checkpoint.pt at step 2
    scfg = SpeechTrainConfig(steps=2, batch_seconds=5, val_clips=4, save_every=1, log_every=1, warmup=1)
    m = train_speech_judge(smoke_world, tmp_path / "speech", scfg, progress=False)
    assert m["steps"] == 2 and 0 <= m["val_wer"] <= 1.5
    assert len(SpeechJudge.load(tmp_path / "speech").transcribe([np.zeros(16000, dtype=np.float32)])) == 1
    logged = [json.loads(line) for line in (tmp_path / "speech" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2] and all(np.isfinite(r["loss"]) for r in logged)


def test_speech_judge_resumes_bitwise_after_sigkill(smoke_world, tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
    from sigkill import check_sigkill_resume

    check_sigkill_resume("speech_judge", tmp_path, smoke_world)
