"""Whisper speech recognition from a local directory: the ASR judge of the TTS/speech benchmarks (WER).

Greedy decoding (one beam, no sampling, no temperature fallback), the ``transcribe`` task in ``language``,
no timestamps, through transformers' ``WhisperForConditionalGeneration`` and ``WhisperProcessor``. Audio is
resampled to 16 kHz with soxr. Clips up to 30 s go through Whisper's fixed 30 s window, batched; a longer clip is
decoded alone with transformers' sequential long-form algorithm (30 s windows, shifted by the last predicted
timestamp), so a clip's transcript never depends on which clips share its batch. English-only checkpoints
(``*.en``) ignore ``language``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from aromni.errors import CheckpointError, InputError
from aromni.evaluation.judges.hf_dir import LOAD_ERRORS, check_model_dir, contents, load_failed
from aromni.tokenizers.speech.audio_io import resample
from aromni.utils.device import resolve_device
from aromni.utils.extras import optional
from aromni.utils.io import JSONValue, read_json

WHISPER_RATE = 16000
WINDOW_SECONDS = 30


class WhisperTranscriber:
    """A Whisper checkpoint read from ``directory`` (never downloaded), batched greedy transcription."""

    def __init__(self, directory: str | os.PathLike[str], *, device: str = "cpu", language: str = "en",
                 batch_size: int = 8):
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.path = check_model_dir(directory, "whisper")
        if not (self.path / "generation_config.json").is_file():  # without it generate() guesses language and task
            raise CheckpointError(f"{self.path} has no generation_config.json (Whisper's language and task tokens)",
                                  contents("whisper"))
        self.device = resolve_device(device)
        self.language, self.batch_size = language, batch_size
        transformers = optional("transformers", extra="bench", feature="the Whisper ASR judge")
        try:
            self.processor = transformers.WhisperProcessor.from_pretrained(self.path, local_files_only=True)
            self.model = transformers.WhisperForConditionalGeneration.from_pretrained(
                self.path, local_files_only=True).to(self.device).eval()
        except LOAD_ERRORS as e:
            raise load_failed(self.path, "whisper", e) from None
        self.multilingual = bool(getattr(self.model.generation_config, "is_multilingual", False))
        langs = getattr(self.model.generation_config, "lang_to_id", None) or {}
        if self.multilingual and f"<|{language}|>" not in langs:
            raise InputError(f"{self.path} does not know the language {language!r}",
                             f"pass one of {sorted(k.strip('<|>') for k in langs)[:10]}...")

    def transcribe(self, wavs: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        """One transcript per mono waveform ``[T]`` (float in [-1, 1]) at ``sample_rate``, in order.

        Raises:
            InputError: an empty clip, or a clip that is not one-dimensional.
        """
        clips = []
        for i, w in enumerate(wavs):
            a = np.asarray(w, dtype=np.float32)
            if a.ndim != 1 or a.size == 0:
                raise InputError(f"clip {i} has shape {a.shape}", "pass mono waveforms [T] with at least one sample")
            clips.append(resample(a, sample_rate, WHISPER_RATE).astype(np.float32))
        limit = WINDOW_SECONDS * WHISPER_RATE
        short = [i for i, c in enumerate(clips) if len(c) <= limit]
        out: dict[int, str] = {}
        for start in range(0, len(short), self.batch_size):
            rows = short[start:start + self.batch_size]
            out.update(zip(rows, self._batch([clips[i] for i in rows], long_form=False)))
        for i in (i for i, c in enumerate(clips) if len(c) > limit):
            out[i] = self._batch([clips[i]], long_form=True)[0]
        return [out[i] for i in range(len(clips))]

    @torch.inference_mode()
    def _batch(self, clips: list[np.ndarray], *, long_form: bool) -> list[str]:
        extra = dict(truncation=False, padding="longest", return_attention_mask=True) if long_form else {}
        feats = self.processor.feature_extractor(clips, sampling_rate=WHISPER_RATE, return_tensors="pt", **extra)
        kwargs: dict[str, object] = dict(do_sample=False, num_beams=1, return_timestamps=long_form)
        if long_form:
            kwargs["attention_mask"] = feats.attention_mask.to(self.device)
        if self.multilingual:
            kwargs.update(language=self.language, task="transcribe")
        ids = self.model.generate(feats.input_features.to(self.device, self.model.dtype), **kwargs)
        ids = ids.sequences if hasattr(ids, "sequences") else ids
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]

    def spelling(self) -> Mapping[str, str] | None:
        """The British -> American spelling table the directory ships (``normalizer.json``), or ``None``."""
        path = self.path / "normalizer.json"
        table = read_json(path) if path.is_file() else None
        return table if isinstance(table, dict) else None

    def describe(self) -> dict[str, JSONValue]:
        """What the report records about the judge: directory, checkpoint name, sizes, decoding."""
        cfg = self.model.config
        return {"judge": "whisper", "directory": str(self.path), "name": self.path.name,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "d_model": cfg.d_model, "encoder_layers": cfg.encoder_layers, "decoder_layers": cfg.decoder_layers,
                "vocab_size": cfg.vocab_size, "multilingual": self.multilingual,
                "language": self.language if self.multilingual else "en", "decoding": "greedy, transcribe",
                "dtype": str(self.model.dtype).removeprefix("torch."), "device": str(self.device)}
