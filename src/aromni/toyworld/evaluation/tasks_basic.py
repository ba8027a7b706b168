"""ASR (S→T), TTS (T→S) and captioning (I→T) on the world's test records."""

from __future__ import annotations

from aromni.toyworld.evaluation import metrics as M
from aromni.toyworld.evaluation import slices as S
from aromni.toyworld.evaluation.context import Context
from aromni.toyworld.evaluation.generation import decode_speech, resynthesize
from aromni.toyworld.evaluation.prompts import record_prompt, reference_segment
from aromni.toyworld.evaluation.result import TaskResult
from aromni.vocab.tasks import ASR, CAPTION, TTS


def run_asr(ctx: Context) -> TaskResult:
    """Greedy transcripts of test speech vs the transcripts: corpus WER, overall and on each held-out slice
    (:mod:`~aromni.toyworld.evaluation.slices`: unseen voices reading new sentences, held-out words, the held-out
    voice family and synthesizer)."""
    recs = ctx.records(ASR.name)
    outs = ctx.generate(ASR.name, ASR.name, [record_prompt(ctx.model, r, ctx.media) for r in recs])
    refs = [reference_segment(r, 1, "text")["text"] for r in recs]
    hyps = [o.text for o in outs]
    metrics = {
        "n": len(recs),
        "wer": M.corpus_wer(refs, hyps),
        **S.wer_slices(recs, refs, hyps),
        "exact": M.fraction([M.exact_match(a, b) for a, b in zip(refs, hyps)]),
    }
    samples = [{"id": r["id"], "ref": a, "hyp": b, "stop": o.stop_reason}
               for r, a, b, o in zip(recs, refs, hyps, outs)]
    return TaskResult(metrics, samples)


def run_tts(ctx: Context) -> TaskResult:
    """Judge WER on generated speech vs judge WER on the reference audio through the bundle's codec.

    The gap (generated − resynthesised, in WER points) isolates what the language model adds to the codec's own
    loss; the judge's WER on the untouched reference is reported too. The same three figures are given on the
    new sentences alone (random word sequences, held-out words or phrasings: nothing to recall), and the share of
    held-out words the judge hears in the generated speech."""
    recs = ctx.records(TTS.name)
    outs = ctx.generate(TTS.name, TTS.name, [record_prompt(ctx.model, r, ctx.media) for r in recs])
    refs = [reference_segment(r, 1, "speech") for r in recs]
    texts = [s["transcript"] for s in refs]
    gen = [decode_speech(ctx.model, o.speech) for o in outs]
    gt = [ctx.media.waveform(s["path"]) for s in refs]
    resyn = [resynthesize(ctx.model, w) for w in gt]
    h_gen, h_resyn, h_gt = ctx.transcribe(gen), ctx.transcribe(resyn), ctx.transcribe(gt)
    sr = ctx.model.speech.sample_rate
    w_gen, w_resyn = M.corpus_wer(texts, h_gen), M.corpus_wer(texts, h_resyn)
    metrics = {
        "n": len(recs),
        "wer_generated": w_gen,
        "wer_resynthesized": w_resyn,
        "wer_ground_truth": M.corpus_wer(texts, h_gt),
        "gap_points": None if w_gen is None else 100 * (w_gen - w_resyn),
        **_new_sentence_gap(recs, texts, h_gen, h_resyn),
        "no_speech": sum(not o.speech for o in outs),
        "seconds_generated": sum(len(w) for w in gen) / sr,
        "seconds_reference": sum(len(w) for w in gt) / sr,
    }
    samples = [{"id": r["id"], "text": t, "judge_generated": a, "judge_resynthesized": b, "judge_ground_truth": c,
                "generated_seconds": round(len(w) / sr, 3), "stop": o.stop_reason}
               for r, t, a, b, c, w, o in zip(recs, texts, h_gen, h_resyn, h_gt, gen, outs)]
    examples = [{"text": t, "generated": g, "resynthesized": rs, "ground_truth": w, "sample_rate": sr,
                 "judge_generated": a, "judge_resynthesized": b}
                for t, g, rs, w, a, b in list(zip(texts, gen, resyn, gt, h_gen, h_resyn))[: ctx.cfg.keep_examples]]
    return TaskResult(metrics, samples, examples)


def _new_sentence_gap(recs: list, texts: list[str], h_gen: list[str], h_resyn: list[str]) -> dict:
    idx = S.indices(recs, S.new_sentence)
    w_gen, w_resyn = S.sliced_wer(texts, h_gen, idx), S.sliced_wer(texts, h_resyn, idx)
    held = S.indices(recs, lambda r: bool(S.heldout_words(r)))
    return {"n_new_sentences": len(idx), "wer_generated_new_sentences": w_gen,
            "wer_resynthesized_new_sentences": w_resyn,
            "gap_points_new_sentences": None if w_gen is None or w_resyn is None else 100 * (w_gen - w_resyn),
            "heldout_word_recall_generated": S.word_recall([S.heldout_words(recs[i]) for i in held],
                                                           [h_gen[i] for i in held])}


def run_caption(ctx: Context) -> TaskResult:
    """Greedy captions of test images: all-attributes-correct, per attribute, and CIDEr against every caption
    template of the world's grammar (its version's) filled with the image's attributes."""
    recs = ctx.records(CAPTION.name)
    outs = ctx.generate(CAPTION.name, CAPTION.name, [record_prompt(ctx.model, r, ctx.media) for r in recs])
    truths = [r["meta"]["image"] for r in recs]
    hyps = [o.text for o in outs]
    reads = [M.read_attributes(h) for h in hyps]
    acc = M.attribute_accuracy(reads, truths)
    held = [i for i, r in enumerate(recs) if r["meta"].get("heldout_combo")]
    cid = M.cider([M.reference_captions(t, ctx.world_version) for t in truths], hyps)
    metrics = {
        "n": len(recs),
        "all_correct": acc["all"],
        "attributes": {k: v for k, v in acc.items() if k != "all"},
        "all_correct_heldout_combos": M.attribute_accuracy([reads[i] for i in held], [truths[i] for i in held])["all"],
        "n_heldout_combos": len(held),
        "cider": cid[0] if cid else None,
    }
    samples = [{"id": r["id"], "attributes": t, "caption": h, "read": rd,
                "correct": all(rd[k] == t[k] for k in t), "cider": (cid[1][i] if cid else None)}
               for i, (r, t, h, rd) in enumerate(zip(recs, truths, hyps, reads))]
    return TaskResult(metrics, samples)
