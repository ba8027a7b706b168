"""OmniVIVO on LibriTTS test-clean text: each sentence is drawn and spoken in one loop
(``VivoPipeline.generate``). The speech is scored as OmniVIVO Table 1 (Whisper WER/CER) plus DNSMOS, the images
by Inception Score (Table 2's metric; the paper's 250 ChatGPT prompts are not published, so the prompts here are
the LibriTTS sentences). Requests run one at a time, so each record's latencies are one request's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aromni.errors import AromniError
from aromni.evaluation.context import SuiteContext
from aromni.evaluation.datasets import EvalSample
from aromni.evaluation.metrics import inception_metrics, tts_metrics
from aromni.evaluation.scoring import speech_scores
from aromni.omnivivo.api import VivoPipeline, VivoResult
from aromni.utils.io import JSONValue

Record = dict[str, JSONValue]


def vivo_batch(ctx: SuiteContext, samples: Sequence[EvalSample]) -> list[Record]:
    """Image + speech per sentence with the pipeline's default sampling (LlamaGen's CFG 7.5 / top-k 1000, RAS
    speech), then Whisper, DNSMOS and the Inception network on the batch."""
    pipe = ctx.model
    assert isinstance(pipe, VivoPipeline)
    results: list[VivoResult | None] = []
    errors: list[str | None] = []
    for s, seed in zip(samples, ctx.seeds([s.id for s in samples])):
        try:
            r = pipe.generate([s.text], seed=[seed])[0]
        except AromniError as e:  # a caption the conditioner refuses: no image, no speech, the reason kept
            results.append(None)
            errors.append(e.problem)
            continue
        results.append(r)
        errors.append(None)
        ctx.save_image(s.id, r.image)
        ctx.save_speech(s.id, r.audio.float().numpy(), pipe.sample_rate)
    wavs = [np.zeros(0, dtype=np.float32) if r is None else r.audio.float().numpy() for r in results]
    scores = speech_scores(ctx.judges, [s.text for s in samples], wavs, pipe.sample_rate, chars=True,
                           dnsmos=ctx.settings.dnsmos)
    images = [None if r is None else r.image for r in results]
    have = [i for i, im in enumerate(images) if im is not None]
    probs = ctx.judges.inception.probs([images[i] for i in have]) if have else []
    prob_of = {i: [float(x) for x in p] for i, p in zip(have, probs)}
    out = []
    for i, (s, r, sc) in enumerate(zip(samples, results, scores)):
        timing: Record = {"error": errors[i]} if r is None else \
            r.timings.to_dict() | {"speech_codes": int(r.speech_codes.numel()), "stop_reason": r.stop_reason}
        out.append({"text": s.text, "speaker": s.meta.get("speaker"), **sc, "no_speech": wavs[i].size == 0,
                    "timing": timing, "inception_probs": prob_of.get(i), "error": errors[i]})
    return out


def vivo_metrics(records: Sequence[Record]) -> dict[str, JSONValue]:
    """Speech (WER, CER, DNSMOS, latencies) and Inception Score of the images, in selection order."""
    out = tts_metrics(records)
    out["inception_score"] = inception_metrics(records)
    out["missing_images"] = sum(1 for r in records if r.get("inception_probs") is None)
    return out
