"""Judge sanity rows and streaming-TTS latency.

* Judges: the speech judge's WER on held-out ground truth (test user clips, unseen voices) and on the same clips
  through the bundle's codec, and on the held-out slices of the ASR test records' ground-truth speech (unseen
  voices reading new sentences, the held-out voice family and synthesizer); the image judge's accuracy on ground-truth test images and on their VQGAN
  reconstructions. They bound what the generated-media metrics can show.
* Streaming: TTS requests timed one at a time through :class:`~aromni.inference.streaming.SpeechStreamer`
  (greedy TTS policy, first chunk 4 frames): FTL, first speech token, time to first audio, RTF; medians over
  the clips. The clock starts before the prompt is encoded, as in ``OmniModel.tts``; one untimed warm-up
  request runs first.
"""

from __future__ import annotations

import torch

from aromni.toyworld.evaluation import metrics as M
from aromni.toyworld.evaluation import slices as S
from aromni.toyworld.evaluation.context import STREAMING_STEP, Context
from aromni.toyworld.evaluation.generation import (
    policy_options,
    reconstruct_images,
    resynthesize,
    stream_speech,
)
from aromni.toyworld.evaluation.prompts import record_prompt, reference_segment
from aromni.toyworld.evaluation.result import TaskResult
from aromni.toyworld.records import read_jsonl
from aromni.vocab.tasks import ASR, TTS


def run_judges(ctx: Context) -> TaskResult:
    from PIL import Image

    n = ctx.cfg.limit("judges")
    clips = [r for r in read_jsonl(ctx.world / "speech.jsonl") if r["split"] == ctx.cfg.split and r["role"] == "user"]
    clips = clips[:n]
    wavs = [ctx.media.waveform(r["path"]) for r in clips]
    refs = [r["transcript"] for r in clips]
    h_gt = ctx.transcribe(wavs)
    h_re = ctx.transcribe([resynthesize(ctx.model, w) for w in wavs])
    rows = [r for r in read_jsonl(ctx.world / "images.jsonl") if r["split"] == ctx.cfg.split][:n]
    images = []
    for r in rows:
        with Image.open(ctx.media.path(r["path"])) as im:
            images.append(im.convert("RGB"))
    truths = [r["attrs"] for r in rows]
    acc_gt = M.attribute_accuracy(ctx.read_images(images), truths)
    recon = []
    for i in range(0, len(images), 64):
        recon += reconstruct_images(ctx.model, images[i:i + 64])
    acc_re = M.attribute_accuracy(ctx.read_images(recon), truths)
    metrics = {
        "speech_clips": len(clips),
        "speech_wer_ground_truth": M.corpus_wer(refs, h_gt),
        "speech_wer_codec": M.corpus_wer(refs, h_re),
        "images": len(rows),
        "image_all_correct_ground_truth": acc_gt["all"],
        "image_all_correct_vqgan": acc_re["all"],
        "image_attributes_vqgan": {k: v for k, v in acc_re.items() if k != "all"},
        **_speech_judge_slices(ctx, n),
    }
    samples = [{"path": r["path"], "ref": a, "judge_ground_truth": b, "judge_codec": c}
               for r, a, b, c in zip(clips, refs, h_gt, h_re) if not (a == b == c)]
    examples = [{"ground_truth": im, "vqgan": re, "attributes": t}
                for im, re, t in list(zip(images, recon, truths))[: ctx.cfg.keep_examples]]
    return TaskResult(metrics, samples, examples)


def _speech_judge_slices(ctx: Context, n: int) -> dict:
    """The judge on the ground-truth speech of the ASR test records, per held-out slice (``speech_`` keys)."""
    recs = ctx.records(ASR.name, "judges")[:n]
    segs = [reference_segment(r, 0, "speech") for r in recs]
    recs, segs = [r for r, s in zip(recs, segs) if s], [s for s in segs if s]
    heard = ctx.transcribe([ctx.media.waveform(s["path"]) for s in segs])
    return {f"speech_{k}": v for k, v in S.wer_slices(recs, [s["transcript"] for s in segs], heard).items()}


def run_streaming(ctx: Context) -> TaskResult:
    recs = ctx.records(TTS.name, STREAMING_STEP)
    opts = policy_options(ctx.model, TTS.name, ctx.cfg.caps)
    seeds = ctx.seeds(STREAMING_STEP, len(recs))
    keys = ("ftl", "first_speech_token", "first_audio", "total", "rtf", "audio_seconds", "speech_codes", "tokens")
    rows = []
    for i, r in enumerate([recs[0], *recs] if recs else []):
        _, m = stream_speech(ctx.model, lambda r=r: record_prompt(ctx.model, r, ctx.media),
                             opts.replace(seed=seeds[max(0, i - 1)]))
        if i:  # the first request is an untimed warm-up
            rows.append({"id": r["id"], **{k: m[k] for k in keys}})
    metrics = {
        "n": len(rows),
        "with_speech": sum(r["speech_codes"] > 0 for r in rows),
        "exact_streaming": bool(ctx.model.speech.stream_decoder(1).exact),
        "threads": torch.get_num_threads(),
        "device": str(ctx.model.device),
        **{f"median_{k}": M.median([r[k] for r in rows]) for k in ("ftl", "first_speech_token", "first_audio",
                                                                    "rtf", "total", "audio_seconds")},
    }
    return TaskResult(metrics, rows)
