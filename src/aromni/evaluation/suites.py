"""The public suites: which dataset each reads, its default sample count, the judges it needs, its batch
function (samples -> records) and its merge (records -> corpus metrics)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aromni.errors import InputError
from aromni.evaluation.context import SuiteContext
from aromni.evaluation.datasets import (
    EvalSample,
    read_coco_captions,
    read_coco_t2i_captions,
    read_librispeech,
    read_libritts,
    read_vctk,
)
from aromni.evaluation.metrics import asr_metrics, tts_metrics
from aromni.evaluation.suite_vivo import vivo_batch, vivo_metrics
from aromni.evaluation.suites_image import caption_batch, caption_metrics, t2i_batch, t2i_metrics
from aromni.evaluation.suites_speech import asr_batch, libritts_batch, tts_batch
from aromni.utils.io import JSONValue

Record = dict[str, JSONValue]


@dataclass(frozen=True)
class Suite:
    """One public benchmark.

    Attributes:
        name: the ``--suite`` value.
        dataset: the layout it reads (``datasets.LAYOUTS`` key) and the data flag (``--coco`` ...).
        read: the dataset reader (directory -> samples in canonical order).
        default_limit: samples without ``--limit`` (``None``: all).
        judges: the judges it needs (``scoring.JUDGE_FLAGS`` keys).
        batch: samples -> one record each.
        metrics: records (in selection order) -> corpus metrics.
        model: ``"omni"`` (an AR-Omni bundle) or ``"vivo"`` (an OmniVIVO export).
        table: the paper table it reproduces.
        speech_out: the model speaks (TTS suites: DNSMOS, ground-truth row).
    """

    name: str
    dataset: str
    read: Callable[[Path | None], list[EvalSample]]
    default_limit: int | None
    judges: tuple[str, ...]
    batch: Callable[[SuiteContext, Sequence[EvalSample]], list[Record]]
    metrics: Callable[[Sequence[Record]], dict[str, JSONValue]]
    model: str
    table: str
    speech_out: bool = False


SUITES: dict[str, Suite] = {s.name: s for s in (
    Suite("coco-caption", "coco", read_coco_captions, None, (), caption_batch, caption_metrics, "omni",
          "AR-Omni Table 2: COCO Karpathy test, CIDEr"),
    Suite("coco-t2i", "coco", read_coco_t2i_captions, 30000, ("clip",), t2i_batch, t2i_metrics, "omni",
          "AR-Omni Table 4: 30k COCO val2014 captions -> images, CLIP score"),
    Suite("librispeech", "librispeech", read_librispeech, None, (), asr_batch, asr_metrics, "omni",
          "AR-Omni Table 5: LibriSpeech test-clean, WER"),
    Suite("vctk-tts", "vctk", read_vctk, 1000, ("transcriber",), tts_batch, tts_metrics, "omni",
          "AR-Omni Table 6: VCTK TTS, WER (Whisper), FTL, RTF", True),
    Suite("libritts-tts", "libritts", read_libritts, 1000, ("transcriber",), libritts_batch, tts_metrics, "omni",
          "OmniVIVO Table 1 protocol on an AR-Omni bundle: LibriTTS test-clean TTS, WER/CER (Whisper)", True),
    Suite("vivo", "libritts", read_libritts, 1000, ("transcriber", "inception"), vivo_batch, vivo_metrics, "vivo",
          "OmniVIVO Tables 1-2: LibriTTS test-clean text -> speech (WER/CER) + image (Inception Score)", True),
)}

#: The suites of AR-Omni's Table 7 (the ablation) and the metric of each column.
TABLE7 = (("I2T", "coco-caption", "cider"), ("T2I", "coco-t2i", "clip_score"), ("ASR", "librispeech", "wer"),
          ("TTS", "vctk-tts", "wer"))


def parse_suites(text: str) -> tuple[str, ...]:
    """``--suite`` value: ``toy`` alone, or a comma-separated list of public suites."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    known = ("toy", *SUITES)
    bad = [n for n in names if n not in known]
    if not names or bad:
        raise InputError(f"unknown suite {', '.join(bad) or repr(text)}", f"one of {', '.join(known)}")
    if "toy" in names and len(names) > 1:
        raise InputError("--suite toy runs alone", "run the public suites in another command")
    kinds = {SUITES[n].model for n in names if n in SUITES}
    if len(kinds) > 1:
        raise InputError("--suite vivo evaluates an OmniVIVO export and cannot share a run with AR-Omni suites",
                         "run it in its own command")
    return tuple(dict.fromkeys(names))
