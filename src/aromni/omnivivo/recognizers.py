"""Speech recognizers for ``aromni omnivivo generate``'s WER filter: a small protocol and the shipped choices.

A recognizer turns waveforms into text::

    class Recognizer(Protocol):
        name: str
        def transcribe(self, wavs: list[np.ndarray], sample_rate: int) -> list[str]: ...

``wavs`` are mono float32 ``[T_i]`` arrays at ``sample_rate`` (the speech tokenizer's rate); the result has one
string per waveform, in order. Shipped (``--recognizer``):

* ``toy-judge``: the toy world's character CTC speech judge (:class:`~aromni.toyworld.judges.speech.SpeechJudge`,
  shipped with the package; it resamples to its own 16 kHz). It reads the toy world's English only.
* ``none``: no recognizer; transcripts and WERs are null and only the duration / silence checks flag rows.

Plugging in Whisper (or any ASR) is a class with those two members, passed to
:func:`aromni.omnivivo.dataset_builder.build_dataset`; aromni downloads nothing, the model is yours::

    import numpy as np
    from transformers import pipeline          # or openai-whisper, faster-whisper, ...

    class WhisperRecognizer:
        name = "whisper-small"

        def __init__(self, model_dir: str):    # a local directory you downloaded yourself
            self.asr = pipeline("automatic-speech-recognition", model=model_dir)

        def transcribe(self, wavs: list[np.ndarray], sample_rate: int) -> list[str]:
            inputs = [{"raw": w, "sampling_rate": sample_rate} for w in wavs]
            return [out["text"] for out in self.asr(inputs)]

    build_dataset(settings, recognizer=WhisperRecognizer("/models/whisper-small"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from aromni.errors import InputError
from aromni.toyworld.judges.speech import SpeechJudge

#: The ``--recognizer`` choices.
RECOGNIZER_NAMES = ("toy-judge", "none")


@runtime_checkable
class Recognizer(Protocol):
    """Waveforms -> transcripts (module docstring). ``name`` is recorded in the dataset's manifest."""

    name: str

    def transcribe(self, wavs: list[np.ndarray], sample_rate: int) -> list[str]:
        """Mono float32 ``[T_i]`` waveforms at ``sample_rate`` -> one transcript each, in order."""
        ...


class ToyJudgeRecognizer:
    """The toy world's character speech judge (default: the one shipped with the package)."""

    name = "toy-judge"

    def __init__(self, judge: SpeechJudge):
        self.judge = judge

    @classmethod
    def load(cls, path: str | Path | None = None) -> ToyJudgeRecognizer:
        return cls(SpeechJudge.load(path))

    def transcribe(self, wavs: list[np.ndarray], sample_rate: int) -> list[str]:
        return self.judge.transcribe(wavs, sample_rate=sample_rate)


def load_recognizer(name: str) -> Recognizer | None:
    """The recognizer called ``name`` (one of :data:`RECOGNIZER_NAMES`); ``None`` for ``"none"``."""
    if name == "none":
        return None
    if name == "toy-judge":
        return ToyJudgeRecognizer.load()
    raise InputError(f"unknown recognizer {name!r}",
                     f"choose one of {', '.join(RECOGNIZER_NAMES)}, or pass a Recognizer to build_dataset")


def check_recognizer(recognizer: object) -> Recognizer | None:
    """``recognizer`` if it implements :class:`Recognizer` (or is ``None``), else :class:`InputError`."""
    if recognizer is None or (isinstance(recognizer, Recognizer) and isinstance(recognizer.name, str)):
        return recognizer
    raise InputError(f"{type(recognizer).__name__} is not a recognizer",
                     "give it a `name` string and a `transcribe(wavs, sample_rate) -> list[str]` method")
