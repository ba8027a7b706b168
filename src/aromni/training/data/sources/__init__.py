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

Classes are imported lazily (by name) so that importing one module never drags in the others.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

from aromni.errors import ConfigError

SOURCE_TYPES: dict[str, str] = {
    "speech_text": "aromni.training.data.sources.pairs:SpeechTextSource",
    "image_text": "aromni.training.data.sources.pairs:ImageTextSource",
    "text": "aromni.training.data.sources.text:TextSource",
    "dialogs": "aromni.training.data.sources.dialogs:DialogSource",
    "official_jsonl": "aromni.training.data.sources.official:OfficialSource",
}


def make_source(index: int, cfg: Mapping[str, Any], base: Path) -> Any:
    """Build the :class:`~aromni.training.data.sources.base.Source` that ``cfg["type"]`` names."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"sources[{index}] must be a mapping with a 'type'")
    kind = cfg.get("type")
    if kind not in SOURCE_TYPES:
        raise ConfigError(f"sources[{index}]: unknown type {kind!r}", f"one of {', '.join(SOURCE_TYPES)}")
    module, cls = SOURCE_TYPES[kind].split(":")
    return getattr(importlib.import_module(module), cls)(index, cfg, base)
