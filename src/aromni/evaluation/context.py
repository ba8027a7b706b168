"""What a suite's batch function gets: the model under test, the judges, the settings and per-sample seeds."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aromni.errors import ConfigError
from aromni.evaluation.records import safe_name
from aromni.evaluation.scoring import Judges
from aromni.inference.omni import OmniModel
from aromni.omnivivo.api import VivoPipeline
from aromni.tokenizers.image.image_io import save_image
from aromni.tokenizers.speech.audio_io import save_wav
from aromni.utils.io import JSONValue

if TYPE_CHECKING:  # Pillow is an optional extra
    from PIL.Image import Image


@dataclass(frozen=True)
class SuiteSettings:
    """Protocol settings shared by the suites (``docs/eval.md``).

    Attributes:
        seed: base seed; each sample's seed derives from it and the sample id (:func:`sample_seed`).
        limit: samples (``None``: the suite's default).
        batch_size: samples per model call (captions, T2I, ASR) and per judge call; TTS and OmniVIVO requests
            run one at a time so their latencies are a single request's.
        text_tokens: cap on caption/transcript tokens.
        speech_seconds_per_word, speech_seconds_min, speech_seconds_max: the TTS length cap,
            ``min(max_s, min_s + per_word * words)`` seconds of speech codes.
        force_speech: end TTS prompts with ``<boa>`` (not the official prompt; for weakly trained bundles).
        ground_truth: also transcribe the dataset's own recordings (Table 6's "Ground Truth" row).
        dnsmos: DNSMOS on every generated clip of the TTS suites.
        instruction: the prompt's instruction for every task of the run (``None``: each task's own, in the
            bundle's prompt style).
    """

    seed: int = 0
    limit: int | None = None
    batch_size: int = 8
    text_tokens: int = 64
    speech_seconds_per_word: float = 0.8
    speech_seconds_min: float = 3.0
    speech_seconds_max: float = 60.0
    force_speech: bool = False
    ground_truth: bool = True
    dnsmos: bool = True
    instruction: str | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.text_tokens < 1 or (self.limit is not None and self.limit < 1):
            raise ConfigError("batch_size, text_tokens and limit must be >= 1")

    def to_dict(self) -> dict[str, JSONValue]:
        return asdict(self)


def sample_seed(seed: int, suite: str, sample_id: str) -> int:
    """A sample's own seed: its output never depends on its batch, its shard or the other samples."""
    h = hashlib.blake2b(f"{seed}/{suite}/{sample_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 2


@dataclass
class SuiteContext:
    """``media``: where generated images / speech are saved (``<id>.png``, ``<id>.wav``); ``None``: not kept."""

    suite: str
    model: OmniModel | VivoPipeline
    judges: Judges
    settings: SuiteSettings
    media: Path | None = None

    def seeds(self, ids: list[str]) -> list[int]:
        return [sample_seed(self.settings.seed, self.suite, i) for i in ids]

    def save_image(self, sample_id: str, image: Image | None) -> None:
        if self.media is not None and image is not None:
            save_image(image, self.media / f"{safe_name(sample_id)}.png", overwrite=True)

    def save_speech(self, sample_id: str, wav: np.ndarray, sample_rate: int) -> None:
        if self.media is not None and wav.size > 0:
            save_wav(self.media / f"{safe_name(sample_id)}.wav", wav, sample_rate)
