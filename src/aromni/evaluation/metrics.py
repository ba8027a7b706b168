"""Corpus metrics from per-sample records (the merge): WER/CER as summed edits over summed reference units,
latency medians, DNSMOS means, Inception Score over the probabilities in selection order."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

from aromni.evaluation.judges import inception_score
from aromni.utils.io import JSONValue

Record = dict[str, JSONValue]


def corpus_rate(records: Sequence[Record], errors: str = "errors", units: str = "ref_words") -> float | None:
    """Summed ``errors`` / summed ``units`` (``None`` with no reference units)."""
    total = sum(int(r[units]) for r in records)
    return None if total == 0 else sum(int(r[errors]) for r in records) / total


def median(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def mean(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def asr_metrics(records: Sequence[Record]) -> dict[str, JSONValue]:
    return {"n": len(records), "wer": corpus_rate(records), "errors": sum(int(r["errors"]) for r in records),
            "ref_words": sum(int(r["ref_words"]) for r in records),
            "too_long": sum(1 for r in records if r.get("error")),
            "audio_hours": sum(float(r["audio_seconds"]) for r in records) / 3600}


def dnsmos_means(records: Sequence[Record]) -> dict[str, JSONValue] | None:
    """Mean of each DNSMOS score over the clips that have one (``None``: DNSMOS was off)."""
    scored = [r["dnsmos"] for r in records if isinstance(r.get("dnsmos"), dict)]
    if not scored:
        return None
    keys = sorted(set().union(*scored))
    return {k: mean([s.get(k) for s in scored]) for k in keys} | {"n": len(scored)}


def timing_metrics(timings: Sequence[Record], frame_rate: float | None = None) -> dict[str, JSONValue]:
    """Medians (and means) of the requests' latencies, and speech codes per second of audio."""
    out: dict[str, JSONValue] = {}
    for key in ("ftl", "first_audio", "first_speech_token", "total", "rtf", "image_seconds", "speech_seconds"):
        vals = [t.get(key) for t in timings]
        if any(v is not None for v in vals):
            out[f"median_{key}"], out[f"mean_{key}"] = median(vals), mean(vals)
    audio = sum(float(t.get("audio_seconds") or 0.0) for t in timings)
    codes = sum(int(t.get("speech_codes") or 0) for t in timings)
    out["audio_seconds"] = audio
    out["speech_tokens_per_second"] = codes / audio if audio and codes else frame_rate
    return out


def tts_metrics(records: Sequence[Record], *, frame_rate: float | None = None) -> dict[str, JSONValue]:
    out: dict[str, JSONValue] = {
        "n": len(records), "wer": corpus_rate(records), "errors": sum(int(r["errors"]) for r in records),
        "ref_words": sum(int(r["ref_words"]) for r in records),
        "no_speech": sum(1 for r in records if r.get("no_speech")),
        "refused": sum(1 for r in records if r.get("error") or r["timing"].get("error")),
        "timing": timing_metrics([r["timing"] for r in records], frame_rate),
        "dnsmos": dnsmos_means(records),
    }
    if all("char_errors" in r for r in records):
        out["cer"] = corpus_rate(records, "char_errors", "ref_chars")
    gts = [r["ground_truth"] for r in records if isinstance(r.get("ground_truth"), dict)]
    if gts:
        out["ground_truth"] = {"n": len(gts), "wer": corpus_rate(gts)}
        if all("char_errors" in g for g in gts):
            out["ground_truth"]["cer"] = corpus_rate(gts, "char_errors", "ref_chars")
    return out


def inception_metrics(records: Sequence[Record], splits: int = 10) -> dict[str, JSONValue]:
    """Inception Score (mean, std over ``splits``, fewer when there are fewer images) of the records' class
    probabilities, in the records' order."""
    probs = [r["inception_probs"] for r in records if r.get("inception_probs") is not None]
    if not probs:
        return {"n": 0, "mean": None, "std": None, "splits": 0}
    k = max(1, min(splits, len(probs)))
    m, s = inception_score(np.asarray(probs, dtype=np.float64), splits=k)
    return {"n": len(probs), "mean": float(m), "std": float(s), "splits": k}
