"""Image generation: T2I (with and without CFG), S→I, and the two-turn ``chat_image`` dialogs.

Generated images are read by the image judge and compared with the attributes the prompt asked for. In
``chat_image`` the model draws the image of turn 1 itself; the turn-2 question is then asked about *that* image
(it is put into the history as the assistant's turn), and the answer is scored both against the judge's reading
of the generated image (is the model consistent with what it drew?) and against the requested attributes.
"""

from __future__ import annotations

from typing import Any

from aromni.toyworld.evaluation import metrics as M
from aromni.toyworld.evaluation import slices as S
from aromni.toyworld.evaluation.context import Context
from aromni.toyworld.evaluation.generation import (
    ANSWER_SPEECH,
    ANSWER_TEXT,
    T2I_NOCFG,
    decode_image,
    decode_speech,
)
from aromni.toyworld.evaluation.prompts import encode_prompt, record_prompt, record_turns, reference_segment
from aromni.toyworld.evaluation.result import TaskResult
from aromni.vocab.conversation import ImageSegment, Turn
from aromni.vocab.tasks import CHAT_IMAGE, S2I, T2I


def _user_text(rec: dict[str, Any], turn: int = 0) -> str:
    """What the user asked, for figures: the text of the turn, or the transcript of its speech."""
    segs = rec["turns"][turn]["segments"]
    speech = [s["transcript"] for s in segs if s["type"] == "speech"]
    return speech[0] if speech else " ".join(s["text"] for s in segs if s["type"] == "text")


def _image_metrics(reads: list, recs: list[dict[str, Any]]) -> dict[str, Any]:
    truths = [r["meta"]["image"] for r in recs]
    acc = M.attribute_accuracy(reads, truths)
    held = [i for i, r in enumerate(recs) if r["meta"].get("heldout_combo")]
    phrased = S.indices(recs, S.heldout_phrasing)
    return {"all_correct": acc["all"], "attributes": {k: v for k, v in acc.items() if k != "all"},
            "all_correct_heldout_combos": M.attribute_accuracy([reads[i] for i in held],
                                                               [truths[i] for i in held])["all"],
            "n_heldout_combos": len(held),
            "all_correct_heldout_phrasings": M.attribute_accuracy([reads[i] for i in phrased],
                                                                  [truths[i] for i in phrased])["all"],
            "n_heldout_phrasings": len(phrased)}


def run_t2i(ctx: Context) -> TaskResult:
    """Judge accuracy of generated images, sampled with CFG (the T2I policy) and without (same seeds)."""
    recs = ctx.records(T2I.name)
    prompts = [record_prompt(ctx.model, r, ctx.media) for r in recs]
    images = {}
    for name, policy in (("cfg", T2I.name), ("no_cfg", T2I_NOCFG)):
        outs = ctx.generate(T2I.name, policy, prompts)
        images[name] = [decode_image(ctx.model, o.image) for o in outs]
    reads = {k: ctx.read_images(v) for k, v in images.items()}
    metrics = {"n": len(recs), **{k: _image_metrics(v, recs) for k, v in reads.items()}}
    cfg, plain = metrics["cfg"]["all_correct"], metrics["no_cfg"]["all_correct"]
    metrics["cfg_gain_points"] = None if cfg is None or plain is None else 100 * (cfg - plain)
    samples = [{"id": r["id"], "prompt": _user_text(r), "attributes": r["meta"]["image"],
                "read_cfg": reads["cfg"][i], "read_no_cfg": reads["no_cfg"][i]} for i, r in enumerate(recs)]
    examples = [{"prompt": _user_text(r), "attributes": r["meta"]["image"], "cfg": images["cfg"][i],
                 "no_cfg": images["no_cfg"][i], "read_cfg": reads["cfg"][i], "read_no_cfg": reads["no_cfg"][i],
                 "ground_truth": str(ctx.media.path(reference_segment(r, 1, "image")["path"]))}
                for i, r in enumerate(recs[: ctx.cfg.keep_examples])]
    return TaskResult(metrics, samples, examples)


def run_s2i(ctx: Context) -> TaskResult:
    """Spoken description -> transcript + image: judge accuracy of the image (no image counts as wrong), and the
    WER of the transcript part."""
    recs = ctx.records(S2I.name)
    outs = ctx.generate(S2I.name, S2I.name, [record_prompt(ctx.model, r, ctx.media) for r in recs])
    images = [decode_image(ctx.model, o.image) for o in outs]
    reads = ctx.read_images(images)
    said = [reference_segment(r, 1, "text")["text"] for r in recs]
    metrics = {"n": len(recs), **_image_metrics(reads, recs), "no_image": sum(im is None for im in images),
               "transcript_wer": M.corpus_wer(said, [o.text for o in outs])}
    samples = [{"id": r["id"], "said": s, "text": o.text, "attributes": r["meta"]["image"], "read": rd,
                "stop": o.stop_reason} for r, s, o, rd in zip(recs, said, outs, reads)]
    examples = [{"prompt": s, "attributes": r["meta"]["image"], "image": im, "read": rd}
                for r, s, im, rd in list(zip(recs, said, images, reads))[: ctx.cfg.keep_examples]]
    return TaskResult(metrics, samples, examples)


def run_chat_image(ctx: Context) -> TaskResult:
    """Turn 1: the model draws (T2I policy). Turn 2: the follow-up question about the drawn image (answer
    policy); scored against the judge's reading of the generated image and against the request."""
    recs = ctx.records(CHAT_IMAGE.name)
    first = ctx.generate(CHAT_IMAGE.name, T2I.name, [record_prompt(ctx.model, r, ctx.media, 0) for r in recs],
                         seed_key=f"{CHAT_IMAGE.name}/turn1")
    images = [decode_image(ctx.model, o.image) for o in first]
    reads = ctx.read_images(images)
    prompts = []
    for r, o in zip(recs, first):
        # The T2I policy always completes its image (the grammar forces N codes); were one missing, the
        # question would still be asked after an empty span, and it counts as wrong against the drawn image.
        drawn = Turn("assistant", [ImageSegment(o.image if o.image is not None else [])])
        turns = record_turns(r, ctx.media, 1) + [drawn] + record_turns({"turns": r["turns"][2:3]}, ctx.media)
        prompts.append(encode_prompt(ctx.model, turns, chat=True))
    spoken = [reference_segment(r, 3, "speech") is not None for r in recs]
    second: list[Any] = [None] * len(recs)
    for flag, policy in ((True, ANSWER_SPEECH), (False, ANSWER_TEXT)):
        idx = [i for i, sp in enumerate(spoken) if sp == flag]
        outs = ctx.generate(CHAT_IMAGE.name, policy, [prompts[i] for i in idx],
                            seed_key=f"{CHAT_IMAGE.name}/turn2/{policy}")
        for i, o in zip(idx, outs):
            second[i] = o
    wavs = [decode_speech(ctx.model, o.speech) if sp else None for o, sp in zip(second, spoken)]
    heard = iter(ctx.transcribe([w for w in wavs if w is not None]))
    replies = [next(heard) if w is not None else o.text for o, w in zip(second, wavs)]
    attrs = [r["meta"]["question_attribute"] for r in recs]
    vs_drawn = [rd is not None and M.answer_correct(a, h, rd) for a, h, rd in zip(attrs, replies, reads)]
    vs_request = [M.answer_correct(a, h, r["meta"]["image"]) for a, h, r in zip(attrs, replies, recs)]
    # The judge's ceiling on spoken replies: the rule applied to its transcript of the recorded reference answers.
    said = [(r, reference_segment(r, 3, "speech")) for r, sp in zip(recs, spoken) if sp]
    ceiling_reads = ctx.transcribe([ctx.media.waveform(seg["path"]) for _, seg in said])
    ceiling = [M.answer_correct(r["meta"]["question_attribute"], h, r["meta"]["image"])
               for (r, _), h in zip(said, ceiling_reads)]
    metrics = {"n": len(recs), "answer_vs_generated_image": M.fraction(vs_drawn),
               "answer_vs_request": M.fraction(vs_request),
               "answer_vs_generated_image_spoken": M.fraction([c for c, sp in zip(vs_drawn, spoken) if sp]),
               "answer_vs_generated_image_text": M.fraction([c for c, sp in zip(vs_drawn, spoken) if not sp]),
               "spoken_reference_audio_accuracy": M.fraction(ceiling),
               "turn1_image": _image_metrics(reads, recs), "spoken_replies": sum(spoken),
               "no_image": sum(o.image is None for o in first)}
    samples = [{"id": r["id"], "request": _user_text(r, 0), "question": _user_text(r, 2), "attribute": a,
                "requested": r["meta"]["image"], "drawn_read": rd, "reply": h, "spoken": sp,
                "correct_vs_generated_image": c1, "correct_vs_request": c2}
               for r, a, rd, h, sp, c1, c2 in zip(recs, attrs, reads, replies, spoken, vs_drawn, vs_request)]
    examples = [{"prompt": _user_text(r, 0), "question": _user_text(r, 2), "reply": h, "image": im, "read": rd,
                 "attributes": r["meta"]["image"]}
                for r, im, rd, h in list(zip(recs, images, reads, replies))[: ctx.cfg.keep_examples]]
    return TaskResult(metrics, samples, examples)
