"""The suite's summary rows: which metric, its target, pass or fail. Misses are reported, never hidden.

A row whose metric could not be computed (task not run, no samples) has ``value`` ``None`` and ``pass`` ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aromni.toyworld.attributes import ATTRIBUTE_NAMES
from aromni.utils.io import JSONValue
from aromni.vocab.tasks import CHAT_IMAGE


@dataclass(frozen=True)
class RowSpec:
    section: str  # "main" | "streaming" | "judges"
    task: str
    metric: str
    key: str  # dotted path into the task metrics: "<task>.<field>[.<field>]"
    unit: str  # "pct" (fraction shown in %), "points", "ms" (seconds shown in ms), "x" (ratio), "score"
    target: tuple[str, float] | None = None  # ("<=" | ">=", value in the metric's own scale)
    n_key: str | None = None  # where the sample count is (default: "<task>.n")


ROWS: tuple[RowSpec, ...] = (
    # The goals of the toy world (issue 11), on what training never saw: held-out voices, sentences, words,
    # phrasings, attribute combinations, a held-out synthesizer. Version-1 worlds have no such slices (n/a).
    RowSpec("main", "ASR (S→T)", "WER, held-out voices × held-out sentences",
            "asr.wer_heldout_voices_new_sentences", "pct", ("<=", 0.05), "asr.n_heldout_voices_new_sentences"),
    RowSpec("main", "ASR (S→T)", "WER, held-out synthesizer (flite)", "asr.wer_synth", "pct", ("<=", 0.30),
            "asr.n_synth"),
    RowSpec("main", "ASR (S→T)", "WER, held-out voice family (espeak-ng Klatt)", "asr.wer_family", "pct", None,
            "asr.n_family"),
    RowSpec("main", "ASR (S→T)", "WER, held-out voices (all sentences)", "asr.wer_heldout_voices", "pct", None,
            "asr.n_heldout_voices"),
    RowSpec("main", "ASR (S→T)", "held-out words heard right", "asr.heldout_word_recall", "pct", None,
            "asr.n_heldout_words"),
    RowSpec("main", "TTS (T→S)", "judge WER, generated speech, held-out sentences", "tts.wer_generated_new_sentences",
            "pct", None, "tts.n_new_sentences"),
    RowSpec("main", "TTS (T→S)", "judge WER, codec-resynthesised reference, held-out sentences",
            "tts.wer_resynthesized_new_sentences", "pct", None, "tts.n_new_sentences"),
    RowSpec("main", "TTS (T→S)", "gap on held-out sentences: generated − resynthesised",
            "tts.gap_points_new_sentences", "points", ("<=", 5.0), "tts.n_new_sentences"),
    RowSpec("main", "TTS (T→S)", "gap, all test sentences", "tts.gap_points", "points"),
    RowSpec("main", "Caption (I→T)", "all 5 attributes correct", "caption.all_correct", "pct", (">=", 0.90)),
    RowSpec("main", "Caption (I→T)", "CIDEr (grammar template references)", "caption.cider", "score"),
    RowSpec("main", "T2I (T→I)", "judge: all 5 correct, held-out combinations, with CFG",
            "t2i.cfg.all_correct_heldout_combos", "pct", (">=", 0.85), "t2i.cfg.n_heldout_combos"),
    RowSpec("main", "T2I (T→I)", "CFG gain: all 5 correct with − without CFG", "t2i.cfg_gain_points", "points",
            (">=", 0.1)),
    RowSpec("main", "T2I (T→I)", "judge: all 5 correct, held-out phrasings, with CFG",
            "t2i.cfg.all_correct_heldout_phrasings", "pct", (">=", 0.70), "t2i.cfg.n_heldout_phrasings"),
    RowSpec("main", "T2I (T→I)", "judge: all 5 correct, with CFG", "t2i.cfg.all_correct", "pct"),
    RowSpec("main", "T2I (T→I)", "judge: all 5 correct, without CFG", "t2i.no_cfg.all_correct", "pct"),
    RowSpec("main", "S→I", "judge: all 5 correct", "s2i.all_correct", "pct", (">=", 0.80)),
    RowSpec("main", "I+S→S (vqa_speech)", "answer accuracy (judge-transcribed)", "vqa_speech.accuracy", "pct",
            (">=", 0.85)),
    RowSpec("main", "I+S→T (vqa_text)", "answer accuracy", "vqa_text.accuracy", "pct"),
    RowSpec("main", "S→S (s2s)", "exchange accuracy (judge-transcribed, exact)", "s2s.accuracy", "pct"),
    RowSpec("main", "S→T (s2t)", "exchange accuracy (exact)", "s2t.accuracy", "pct"),
    RowSpec("main", "Chat, 2nd turn", "answer vs judge's reading of the generated image",
            "chat_image.answer_vs_generated_image", "pct", (">=", 0.80)),
    RowSpec("main", "Chat, 2nd turn", "answer vs requested attributes", "chat_image.answer_vs_request", "pct",
            (">=", 0.80)),
    RowSpec("streaming", "Streaming TTS", "FTL (median)", "streaming.median_ftl", "ms"),
    RowSpec("streaming", "Streaming TTS", "first speech token (median)", "streaming.median_first_speech_token", "ms"),
    RowSpec("streaming", "Streaming TTS", "time to first audio (median)", "streaming.median_first_audio", "ms"),
    RowSpec("streaming", "Streaming TTS", "RTF (median)", "streaming.median_rtf", "x"),
    RowSpec("judges", "Speech judge", "WER, held-out voices × held-out sentences (ground truth)",
            "judges.speech_wer_heldout_voices_new_sentences", "pct", ("<=", 0.03),
            "judges.speech_n_heldout_voices_new_sentences"),
    RowSpec("judges", "Speech judge", "WER, held-out voice family (ground truth)", "judges.speech_wer_family", "pct",
            None, "judges.speech_n_family"),
    RowSpec("judges", "Speech judge", "WER, held-out synthesizer (ground truth)", "judges.speech_wer_synth", "pct",
            None, "judges.speech_n_synth"),
    RowSpec("judges", "Speech judge", "WER, held-out ground truth (user clips)", "judges.speech_wer_ground_truth",
            "pct", None, "judges.speech_clips"),
    RowSpec("judges", "Speech judge", "WER, same clips through the bundle's codec", "judges.speech_wer_codec",
            "pct", None, "judges.speech_clips"),
    RowSpec("judges", "Speech judge", "WER, TTS reference audio (assistant voice)", "tts.wer_ground_truth", "pct"),
    RowSpec("judges", "Speech judge", "accuracy ceiling of I+S→S (reference answer audio)",
            "vqa_speech.reference_audio_accuracy", "pct"),
    RowSpec("judges", "Speech judge", "accuracy ceiling of S→S (reference answer audio)",
            "s2s.reference_audio_accuracy", "pct"),
    RowSpec("judges", "Speech judge", "accuracy ceiling of spoken chat replies (reference answer audio)",
            "chat_image.spoken_reference_audio_accuracy", "pct", None, "chat_image.spoken_replies"),
    RowSpec("judges", "Image judge", "all 5 correct, ground-truth images", "judges.image_all_correct_ground_truth",
            "pct", (">=", 0.98), "judges.images"),
    RowSpec("judges", "Image judge", "all 5 correct, VQGAN-reconstructed images", "judges.image_all_correct_vqgan",
            "pct", None, "judges.images"),
)

#: Per-attribute tables: (label, dotted path to a dict with the five attributes, dotted path to all-correct).
ATTRIBUTE_ROWS = (
    ("Caption (I→T)", "caption.attributes", "caption.all_correct"),
    ("T2I with CFG", "t2i.cfg.attributes", "t2i.cfg.all_correct"),
    ("T2I without CFG", "t2i.no_cfg.attributes", "t2i.no_cfg.all_correct"),
    ("S→I", "s2i.attributes", "s2i.all_correct"),
    ("Chat turn 1 image", "chat_image.turn1_image.attributes", "chat_image.turn1_image.all_correct"),
    ("VQGAN-reconstructed ground truth", "judges.image_attributes_vqgan", "judges.image_all_correct_vqgan"),
)


def lookup(tasks: Mapping[str, JSONValue], key: str) -> JSONValue:
    cur: Any = tasks
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


#: Above this judge WER on codec-resynthesised references the TTS gap compares two unreadable signals: its
#: verdict is left open (``None``) and the row says why.
CODEC_WER_LIMIT = 0.2
#: Each TTS gap row and the resynthesised-reference WER it is measured against.
GAP_REFERENCE = {"tts.gap_points": "tts.wer_resynthesized",
                 "tts.gap_points_new_sentences": "tts.wer_resynthesized_new_sentences"}
#: Below this judge accuracy on the recorded reference answers, rows scored through the speech judge say so.
CEILING_WARN = 0.95


def passes(value: float | None, target: tuple[str, float] | None) -> bool | None:
    if value is None or target is None:
        return None
    op, bound = target
    return value <= bound if op == "<=" else value >= bound


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "pct":
        return f"{100 * value:.1f}%"
    if unit == "points":
        return f"{value:+.1f} pts"
    if unit == "ms":
        return f"{1000 * value:.0f} ms"
    if unit == "x":
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_target(target: tuple[str, float] | None, unit: str) -> str:
    if target is None:
        return ""
    op, bound = target
    sym = "≤" if op == "<=" else "≥"
    shown = format_value(bound, unit).replace("+", "")
    return f"{sym} {shown}"


def row_note(key: str, tasks: Mapping[str, JSONValue]) -> str:
    """What a reader must know to read a row right (empty when nothing)."""
    task = key.split(".")[0]
    m = tasks.get(task) or {}
    notes = []
    resyn = lookup(tasks, GAP_REFERENCE[key]) if key in GAP_REFERENCE else None
    if isinstance(resyn, float) and resyn > CODEC_WER_LIMIT:
        notes.append(f"no verdict: the codec alone loses {100 * resyn:.0f}% of the words "
                     f"(> {100 * CODEC_WER_LIMIT:.0f}%), so the gap is not meaningful")
    for what, field in (("speech", "no_speech"), ("image", "no_image")):
        if m.get(field) and key.split(".")[-1] in ("accuracy", "all_correct", "wer_generated",
                                                   "wer_generated_new_sentences"):
            notes.append(f"{m[field]} of {m.get('n')} replies had no {what}")
    ceiling = m.get("reference_audio_accuracy", m.get("spoken_reference_audio_accuracy"))
    if key.split(".")[-1] in ("accuracy", "answer_vs_generated_image", "answer_vs_request") and ceiling is not None \
            and ceiling < CEILING_WARN:
        spoken = " (spoken replies)" if task == CHAT_IMAGE.name else ""
        notes.append(f"the speech judge reads only {100 * ceiling:.0f}% of the recorded reference answers"
                     f"{spoken} right: this bounds the score")
    if key == "streaming.median_ftl" and m.get("n") and m.get("with_speech", 0) < m["n"]:
        notes.append(f"only {m.get('with_speech')} of {m['n']} requests produced speech")
    return "; ".join(notes)


def summary_rows(tasks: Mapping[str, JSONValue]) -> list[dict[str, JSONValue]]:
    """One dict per :data:`ROWS` entry: section, task, metric, value, shown, target, pass, n, note."""
    out = []
    for spec in ROWS:
        value = lookup(tasks, spec.key)
        n = lookup(tasks, spec.n_key or spec.key.split(".")[0] + ".n")
        verdict = passes(value, spec.target)
        resyn = lookup(tasks, GAP_REFERENCE[spec.key]) if spec.key in GAP_REFERENCE else None
        if isinstance(resyn, float) and resyn > CODEC_WER_LIMIT:
            verdict = None
        out.append({"section": spec.section, "task": spec.task, "metric": spec.metric, "key": spec.key,
                    "value": value, "shown": format_value(value, spec.unit),
                    "target": format_target(spec.target, spec.unit), "pass": verdict, "n": n,
                    "note": row_note(spec.key, tasks)})
    return out


def attribute_table(tasks: Mapping[str, JSONValue]) -> list[dict[str, JSONValue]]:
    """Per-attribute accuracy rows (only those whose task ran)."""
    out = []
    for label, key, all_key in ATTRIBUTE_ROWS:
        attrs = lookup(tasks, key)
        if attrs is None:
            continue
        out.append({"label": label, **{k: attrs.get(k) for k in ATTRIBUTE_NAMES}, "all": lookup(tasks, all_key),
                    "all_heldout_pairs": lookup(tasks, all_key + "_heldout_combos")})
    return out
