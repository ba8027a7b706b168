"""What every data reader shares, outside the ``sources`` package so that format readers such as
:mod:`aromni.training.data.official_jsonl` can use it without importing every source: the skipped-record error
and the modality group of a sample."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aromni.errors import InputError
from aromni.vocab.layout import VocabLayout


class BadRecord(InputError):
    """A record that is skipped and counted (never fatal). ``reason`` is a short code for the report."""

    def __init__(self, reason: str, problem: str):
        self.reason = reason
        super().__init__(problem)

    def __reduce__(self) -> tuple[object, ...]:
        return (BadRecord, (self.reason, self.problem))


def group_of(ids: Sequence[int] | np.ndarray, layout: VocabLayout) -> str:
    """Modality group of ids: ``image`` with image codes, else ``speech`` with speech codes, else ``text``."""
    if layout.image.contains(ids).any():
        return "image"
    if layout.speech.contains(ids).any():
        return "speech"
    return "text"
