"""Replies in text or speech: I+S→T (``vqa_text``), I+S→S (``vqa_speech``), S→S (``s2s``), S→T (``s2t``).

Correctness: questions about an image follow :func:`~aromni.toyworld.evaluation.metrics.answer_correct` (the
asked attribute read right; "describe": all five); fixed exchanges have one answer and need an exact match after
normalisation. Spoken replies are transcribed by the speech judge first; the same rule applied to the judge's
transcript of the recorded reference answer gives the ceiling the judge allows.
"""

from __future__ import annotations

from typing import Any

from aromni.toyworld.evaluation import metrics as M
from aromni.toyworld.evaluation.context import Context
from aromni.toyworld.evaluation.generation import ANSWER_SPEECH, ANSWER_TEXT, Output, decode_speech
from aromni.toyworld.evaluation.prompts import record_prompt, reference_segment
from aromni.toyworld.evaluation.result import TaskResult


def _verdict(rec: dict[str, Any], reply: str, reference: str) -> bool:
    meta = rec.get("meta", {})
    if "question_attribute" in meta:
        return M.answer_correct(meta["question_attribute"], reply, meta["image"])
    return M.exact_match(reference, reply)


def _run(ctx: Context, task: str, speech: bool) -> tuple[list[dict], list[Output], list[str], list[str], list]:
    recs = ctx.records(task)
    prompts = [record_prompt(ctx.model, r, ctx.media) for r in recs]
    outs = ctx.generate(task, ANSWER_SPEECH if speech else ANSWER_TEXT, prompts)
    kind = "speech" if speech else "text"
    refs = [reference_segment(r, 1, kind) for r in recs]
    ref_texts = [s["transcript"] if speech else s["text"] for s in refs]
    wavs = [decode_speech(ctx.model, o.speech) for o in outs] if speech else []
    replies = ctx.transcribe(wavs) if speech else [o.text for o in outs]
    return recs, outs, ref_texts, replies, wavs


def run_text_answers(ctx: Context, task: str) -> TaskResult:
    """``vqa_text`` or ``s2t``: the text reply, scored by the rule of its question."""
    recs, outs, refs, replies, _ = _run(ctx, task, speech=False)
    ok = [_verdict(r, h, ref) for r, h, ref in zip(recs, replies, refs)]
    metrics = {"n": len(recs), "accuracy": M.fraction(ok),
               "exact": M.fraction([M.exact_match(a, b) for a, b in zip(refs, replies)])}
    per_attr = _per_attribute(recs, ok)
    if per_attr:
        metrics["accuracy_by_question"] = per_attr
    samples = [{"id": r["id"], "question": _question(r), "ref": ref, "reply": h, "correct": c, "stop": o.stop_reason}
               for r, ref, h, c, o in zip(recs, refs, replies, ok, outs)]
    return TaskResult(metrics, samples)


def run_speech_answers(ctx: Context, task: str) -> TaskResult:
    """``vqa_speech`` or ``s2s``: the spoken reply transcribed by the speech judge, then scored; the judge's
    reading of the reference answer audio gives the ceiling."""
    recs, outs, refs, replies, wavs = _run(ctx, task, speech=True)
    ok = [_verdict(r, h, ref) for r, h, ref in zip(recs, replies, refs)]
    ref_audio = [ctx.media.waveform(reference_segment(r, 1, "speech")["path"]) for r in recs]
    ceiling_reads = ctx.transcribe(ref_audio)
    ceiling = [_verdict(r, h, ref) for r, h, ref in zip(recs, ceiling_reads, refs)]
    metrics = {"n": len(recs), "accuracy": M.fraction(ok), "judge_wer": M.corpus_wer(refs, replies),
               "reference_audio_accuracy": M.fraction(ceiling), "no_speech": sum(not o.speech for o in outs)}
    per_attr = _per_attribute(recs, ok)
    if per_attr:
        metrics["accuracy_by_question"] = per_attr
    samples = [{"id": r["id"], "question": _question(r), "ref": ref, "judge_reply": h, "correct": c,
                "judge_reference_audio": cr, "seconds": round(len(w) / ctx.model.speech.sample_rate, 3),
                "stop": o.stop_reason}
               for r, ref, h, c, cr, w, o in zip(recs, refs, replies, ok, ceiling_reads, wavs, outs)]
    return TaskResult(metrics, samples)


def _question(rec: dict[str, Any]) -> str | None:
    seg = reference_segment(rec, 0, "speech")
    return seg.get("transcript") if seg else None


def _per_attribute(recs: list[dict], ok: list[bool]) -> dict[str, float]:
    groups: dict[str, list[bool]] = {}
    for r, c in zip(recs, ok):
        attr = r.get("meta", {}).get("question_attribute")
        if attr is not None:
            groups.setdefault(attr, []).append(c)
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}
