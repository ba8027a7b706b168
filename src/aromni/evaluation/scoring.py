"""The judges a run uses, loaded once from the CLI's model paths, and per-sample speech scoring.

A record keeps what the corpus metrics need: the hypothesis, the word and character edit counts (summed at the
merge: corpus WER/CER, never the mean of per-sample rates), and DNSMOS's per-clip scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aromni.errors import InputError
from aromni.evaluation.judges import ClipScorer, InceptionJudge, WhisperTranscriber, dnsmos_scores
from aromni.evaluation.judges.normalizer import normalize_english, word_errors
from aromni.evaluation.judges.speech_quality import describe as describe_dnsmos
from aromni.utils.extras import optional
from aromni.utils.io import JSONValue

#: Which CLI flag loads each judge.
JUDGE_FLAGS = {"transcriber": "--transcriber DIR", "clip": "--clip DIR", "inception": "--inception FILE"}


@dataclass
class JudgeSpec:
    """Where the judges are (``None``: not used) and the run's judge settings."""

    transcriber: str | None = None
    clip: str | None = None
    inception: str | None = None
    dnsmos: bool = True
    device: str = "cpu"
    batch_size: int = 8

    def describe(self) -> dict[str, JSONValue]:
        return {"transcriber": _abs(self.transcriber), "clip": _abs(self.clip), "inception": _abs(self.inception),
                "dnsmos": self.dnsmos}


def _abs(p: str | None) -> str | None:
    return None if p is None else str(Path(p).resolve())


class Judges:
    """The loaded judges of one run (each loaded on first use)."""

    def __init__(self, spec: JudgeSpec):
        self.spec = spec
        self._transcriber: WhisperTranscriber | None = None
        self._clip: ClipScorer | None = None
        self._inception: InceptionJudge | None = None

    def require(self, names: Sequence[str], suite: str) -> None:
        """One line naming the flag of every judge ``suite`` needs and was not given."""
        missing = [JUDGE_FLAGS[n] for n in names if getattr(self.spec, n) is None]
        if missing:
            raise InputError(f"--suite {suite} needs {' and '.join(missing)}",
                             "pass the local judge model(s); see docs/eval.md")

    @property
    def transcriber(self) -> WhisperTranscriber:
        if self._transcriber is None:
            self._transcriber = WhisperTranscriber(self.spec.transcriber, device=self.spec.device, language="en",
                                                   batch_size=self.spec.batch_size)
        return self._transcriber

    @property
    def clip(self) -> ClipScorer:
        if self._clip is None:
            self._clip = ClipScorer(self.spec.clip, device=self.spec.device)
        return self._clip

    @property
    def inception(self) -> InceptionJudge:
        if self._inception is None:
            self._inception = InceptionJudge(self.spec.inception, device=self.spec.device)
        return self._inception

    def spelling(self) -> Mapping[str, str] | None:
        return self.transcriber.spelling() if self.spec.transcriber is not None else None

    def describe(self, names: Sequence[str], *, dnsmos: bool = False) -> dict[str, JSONValue]:
        """What each judge in ``names`` is (its own ``describe()``), and DNSMOS's when it ran, for the report."""
        out: dict[str, JSONValue] = {n: getattr(self, n).describe() for n in names}
        if dnsmos:
            out["dnsmos"] = describe_dnsmos()
        return out


def speech_scores(judges: Judges, refs: Sequence[str], wavs: Sequence[np.ndarray], sample_rate: int, *,
                  chars: bool = False, dnsmos: bool = False) -> list[dict[str, JSONValue]]:
    """Per clip: Whisper's transcript ``hyp``, ``errors`` / ``ref_words`` (Whisper-normalised word edits),
    with ``chars`` also ``char_errors`` / ``ref_chars``, with ``dnsmos`` DNSMOS's scores. An empty clip (the
    model made no speech) is not transcribed: its transcript is empty, so every reference word is an error."""
    spoken = [i for i, w in enumerate(wavs) if w.size > 0]
    heard = judges.transcriber.transcribe([wavs[i] for i in spoken], sample_rate) if spoken else []
    hyps = [""] * len(wavs)
    for i, h in zip(spoken, heard):
        hyps[i] = h
    spelling = judges.spelling()
    out: list[dict[str, JSONValue]] = []
    for ref, hyp in zip(refs, hyps):
        errors, words = word_errors([ref], [hyp], spelling=spelling)
        rec: dict[str, JSONValue] = {"hyp": hyp, "errors": errors, "ref_words": words}
        if chars:
            rec["char_errors"], rec["ref_chars"] = char_errors(ref, hyp, spelling)
        out.append(rec)
    if dnsmos:
        scores = dnsmos_scores([wavs[i] for i in spoken], sample_rate) if spoken else []
        for i, s in zip(spoken, scores):
            out[i]["dnsmos"] = {k: float(v) for k, v in s.items()}
    return out


def char_errors(ref: str, hyp: str, spelling: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(character edits, reference characters)`` after :func:`normalize_english` on both sides (spaces count
    as characters, as in jiwer's CER)."""
    jiwer = optional("jiwer", extra="eval", feature="character error rates")
    r, h = normalize_english(ref, spelling=spelling), normalize_english(hyp, spelling=spelling)
    if not r:
        return len(h), 0
    if not h:
        return len(r), len(r)
    o = jiwer.process_characters(r, h)
    return int(o.substitutions + o.deletions + o.insertions), len(r)
