"""Data sources for ``aromni data build``: one class per ``type`` in the build config.

=================  ==========================================================================================
type               input
=================  ==========================================================================================
``speech_text``    audio + transcript pairs (manifest TSV/JSONL or a directory of wav + txt) -> asr / tts
``image_text``     image + caption pairs (manifest TSV/JSONL or a directory of images + txt) -> caption / t2i
``text``           plain text (lines of .txt, a field of .jsonl, or whole files) -> ``<bos> text <eos>``
``dialogs``        multi-turn dialog JSONL with text / image / speech segments -> SFT-style samples
``official_jsonl`` the official AR-Omni pretrain JSONL and SFT parquet (already tokenized)
=================  ==========================================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aromni.errors import ConfigError
from aromni.training.data.sources.base import Source
from aromni.training.data.sources.dialogs import DialogSource
from aromni.training.data.sources.official import OfficialSource
from aromni.training.data.sources.pairs import ImageTextSource, SpeechTextSource
from aromni.training.data.sources.text import TextSource
from aromni.utils.io import JSONValue

SOURCE_TYPES: dict[str, type[Source]] = {
    "speech_text": SpeechTextSource,
    "image_text": ImageTextSource,
    "text": TextSource,
    "dialogs": DialogSource,
    "official_jsonl": OfficialSource,
}


def make_source(index: int, cfg: Mapping[str, JSONValue], base: Path) -> Source:
    """Build the :class:`~aromni.training.data.sources.base.Source` that ``cfg["type"]`` names."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"sources[{index}] must be a mapping with a 'type'")
    kind = cfg.get("type")
    if kind not in SOURCE_TYPES:
        raise ConfigError(f"sources[{index}]: unknown type {kind!r}", f"one of {', '.join(SOURCE_TYPES)}")
    return SOURCE_TYPES[kind](index, cfg, base)
