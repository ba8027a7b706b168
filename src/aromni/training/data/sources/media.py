"""Media files -> codes inside a worker: images in batches, audio one file at a time, failures as BadRecord.

Files are read with :func:`aromni.tokenizers.image.image_io.load_image` and
:func:`aromni.tokenizers.speech.audio_io.load_audio` and encoded with the worker's tokenizers. Results (codes
or the :class:`BadRecord` saying why not) are cached for one chunk, so a file used by several records (an
image in both a caption and a T2I sample) is encoded once. The cache is cleared between chunks, which keeps a
chunk's output independent of which other chunks the worker happened to process (batch composition included).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aromni.errors import AromniError
from aromni.tokenizers.base import ImageTokenizer, SpeechTokenizer
from aromni.tokenizers.image.image_io import load_image
from aromni.tokenizers.speech.audio_io import load_audio
from aromni.training.data.records import BadRecord


class MediaCache:
    """Codes of the image and audio files of the current chunk.

    Args:
        image: image tokenizer (``encode(list_of_PIL) -> [B, h*w]``) or ``None``.
        speech: speech tokenizer (``encode(wav[B, T]) -> [B, F]``, ``sample_rate``) or ``None``.
        image_batch: images per ``encode`` call.
        max_audio_seconds: longer audio files are skipped (``audio_too_long``); ``None``: no limit.
    """

    def __init__(
        self, image: ImageTokenizer | None, speech: SpeechTokenizer | None, *, image_batch: int = 16,
        max_audio_seconds: float | None = 600.0,
    ):
        self.image_tok = image
        self.speech_tok = speech
        self.image_batch = max(1, int(image_batch))
        self.max_audio_seconds = max_audio_seconds
        self._images: dict[Path, np.ndarray | BadRecord] = {}
        self._speech: dict[Path, np.ndarray | BadRecord] = {}

    def clear(self) -> None:
        self._images.clear()
        self._speech.clear()

    # ------------------------------------------------------------------ images
    def prefetch_images(self, paths: Sequence[Path]) -> None:
        """Load and encode ``paths`` (those not cached yet) in batches of ``image_batch``."""
        todo = list(dict.fromkeys(p for p in paths if p not in self._images))
        loaded: list[tuple[Path, Any]] = []
        for p in todo:
            try:
                loaded.append((p, self._load_image(p)))
            except BadRecord as e:
                self._images[p] = e
        for i in range(0, len(loaded), self.image_batch):
            self._encode_images(loaded[i : i + self.image_batch])

    def image(self, path: Path) -> np.ndarray:
        """Codes ``[h*w]`` of one image; raises :class:`BadRecord` when it cannot be read or encoded."""
        if path not in self._images:
            self.prefetch_images([path])
        got = self._images[path]
        if isinstance(got, BadRecord):
            raise got
        return got

    def _load_image(self, path: Path) -> Any:
        if self.image_tok is None:
            raise AromniError(
                "an image source needs an image tokenizer", "set tokenizers.image or use a bundle with one"
            )
        if not path.is_file():
            raise BadRecord("missing_file", f"{path}: no such file")
        try:
            return load_image(path)
        except AromniError as e:
            raise BadRecord("bad_image", str(e)) from None

    def _encode_images(self, batch: list[tuple[Path, Any]]) -> None:
        if not batch:
            return
        try:
            with torch.no_grad():
                codes = self.image_tok.encode([img for _, img in batch])
        except AromniError:
            if len(batch) == 1:
                p = batch[0][0]
                self._images[p] = BadRecord("bad_image", f"{p}: the image tokenizer refused it")
                return
            for one in batch:  # find the image that broke the batch
                self._encode_images([one])
            return
        codes = codes.detach().cpu().numpy().astype(np.int64)
        for (p, _), c in zip(batch, codes):
            self._images[p] = c

    # ------------------------------------------------------------------ speech
    def speech(self, path: Path) -> np.ndarray:
        """Codes ``[F]`` of one audio file; raises :class:`BadRecord` when it cannot be used."""
        if path not in self._speech:
            try:
                self._speech[path] = self._encode_speech(path)
            except BadRecord as e:
                self._speech[path] = e
        got = self._speech[path]
        if isinstance(got, BadRecord):
            raise got
        return got

    def _encode_speech(self, path: Path) -> np.ndarray:
        tok = self.speech_tok
        if tok is None:
            raise AromniError(
                "a speech source needs a speech tokenizer", "set tokenizers.speech or use a bundle with one"
            )
        if not path.is_file():
            raise BadRecord("missing_file", f"{path}: no such file")
        try:
            wav = load_audio(path, tok.sample_rate, max_seconds=self.max_audio_seconds)
        except AromniError as e:
            raise BadRecord(self._audio_reason(path), str(e)) from None
        with torch.no_grad():
            codes = tok.encode(wav.unsqueeze(0))
        return codes[0].detach().cpu().numpy().astype(np.int64)

    def _audio_reason(self, path: Path) -> str:
        """Why ``load_audio`` refused a file: empty, too long, or unreadable (looked up in the header)."""
        if path.stat().st_size == 0:
            return "empty_audio"
        try:
            import soundfile

            info = soundfile.info(str(path))
        except Exception:  # unreadable header: soundfile raises several types
            return "bad_audio"
        if info.frames == 0:
            return "empty_audio"
        if (
            self.max_audio_seconds is not None
            and info.samplerate > 0
            and info.frames / info.samplerate > self.max_audio_seconds
        ):
            return "audio_too_long"
        return "bad_audio"
