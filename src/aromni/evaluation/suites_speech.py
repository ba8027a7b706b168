"""Speech suites of AR-Omni: LibriSpeech test-clean ASR (Table 5) and text-to-speech on VCTK (Table 6) and
LibriTTS test-clean (OmniVIVO Table 1's protocol), transcribed by Whisper.

ASR records keep the reference, the model's transcript and their Whisper-normalised word edits. TTS requests run
one at a time through the streaming path (``OmniModel.tts(stream=True)``), so each record also keeps that
request's latencies (FTL, first audio, total, RTF) next to Whisper's transcript, the edit counts and DNSMOS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from aromni.errors import AromniError
from aromni.evaluation.context import SuiteContext
from aromni.evaluation.datasets import EvalSample
from aromni.evaluation.judges.normalizer import word_errors
from aromni.evaluation.scoring import speech_scores
from aromni.inference.omni import OmniModel
from aromni.tokenizers.speech.audio_io import load_audio
from aromni.utils.io import JSONValue
from aromni.vocab.tasks import ASR, TTS

Record = dict[str, JSONValue]
#: Whisper's input rate: reference recordings are read at it for the ground-truth row.
WHISPER_RATE = 16000


def _model(ctx: SuiteContext) -> OmniModel:
    assert isinstance(ctx.model, OmniModel)
    return ctx.model


def asr_batch(ctx: SuiteContext, samples: Sequence[EvalSample]) -> list[Record]:
    """Greedy transcripts with the ASR task's own instruction. Audio the context cannot hold is not cut: the
    sample is recorded with an empty transcript and the reason (all its words count as errors)."""
    model = _model(ctx)
    sr = model.speech.sample_rate
    wavs = [load_audio(s.path, sr, max_seconds=None).numpy() for s in samples]
    opts = model.options(ASR.name, {"max_new_tokens": ctx.settings.text_tokens})
    seeds = ctx.seeds([s.id for s in samples])
    instruction = ctx.settings.instruction
    hyps: list[tuple[str, str | None]] = []
    try:
        outs = model.asr(wavs, sample_rate=sr, options=opts.replace(seed=seeds), instruction=instruction)
        hyps = [(o.text, None) for o in outs]
    except AromniError:  # one clip too long for the context: run them one by one to keep the others
        for w, seed in zip(wavs, seeds):
            try:
                one = model.asr(w, sample_rate=sr, options=opts.replace(seed=[seed]), instruction=instruction)
                hyps.append((one.text, None))
            except AromniError as e:
                hyps.append(("", e.problem))
    spelling = ctx.judges.spelling()
    out = []
    for s, w, (hyp, err) in zip(samples, wavs, hyps):
        errors, words = word_errors([s.text], [hyp], spelling=spelling)
        out.append({"ref": s.text, "hyp": hyp, "errors": errors, "ref_words": words,
                    "audio_seconds": len(w) / sr, "error": err})
    return out


def speech_cap_tokens(model: OmniModel, text: str, ctx: SuiteContext) -> int:
    st = ctx.settings
    seconds = min(st.speech_seconds_max, st.speech_seconds_min + st.speech_seconds_per_word * len(text.split()))
    return int(math.ceil(seconds * model.speech.frame_rate)) + 8


def _speak(model: OmniModel, text: str, seed: int, ctx: SuiteContext) -> tuple[np.ndarray, Record]:
    """One streamed TTS request: its waveform ``[T]`` and its latency record. A text the model refuses (longer
    than its context) gives no audio and the reason (``error``), so the run goes on and the sample counts."""
    opts = model.options(TTS.name, {"max_new_tokens": speech_cap_tokens(model, text, ctx)}).replace(seed=[seed])
    try:
        stream = model.tts(text, stream=True, options=opts, force_speech=ctx.settings.force_speech,
                           instruction=ctx.settings.instruction)
    except AromniError as e:
        return np.zeros(0, dtype=np.float32), {"error": e.problem}
    chunks = [c.audio for c in stream if c.row == 0]
    wav = torch.cat(chunks).float().numpy() if chunks else np.zeros(0, dtype=np.float32)
    m = stream.metrics[0].to_dict()
    m["stop_reason"] = stream.results[0].stop_reason
    return wav, m


def tts_batch(ctx: SuiteContext, samples: Sequence[EvalSample], *, chars: bool = False) -> list[Record]:
    """Speak each text (one request at a time), then Whisper (and DNSMOS) on the batch; with
    ``settings.ground_truth`` also Whisper on the dataset's own recordings."""
    model = _model(ctx)
    made = [_speak(model, s.text, seed, ctx) for s, seed in zip(samples, ctx.seeds([s.id for s in samples]))]
    texts = [s.text for s in samples]
    for s, (w, _) in zip(samples, made):
        ctx.save_speech(s.id, w, model.speech.sample_rate)
    scores = speech_scores(ctx.judges, texts, [w for w, _ in made], model.speech.sample_rate, chars=chars,
                           dnsmos=ctx.settings.dnsmos)
    out = [{"text": s.text, "speaker": s.meta.get("speaker"), **sc, "no_speech": w.size == 0, "timing": m}
           for s, (w, m), sc in zip(samples, made, scores)]
    if ctx.settings.ground_truth:
        refs = [load_audio(s.path, WHISPER_RATE, max_seconds=None).numpy() for s in samples]
        for rec, gt in zip(out, speech_scores(ctx.judges, texts, refs, WHISPER_RATE, chars=chars)):
            rec["ground_truth"] = gt
    return out


def libritts_batch(ctx: SuiteContext, samples: Sequence[EvalSample]) -> list[Record]:
    return tts_batch(ctx, samples, chars=True)
