"""A bundle: everything a ready model needs, in one directory.

::

    BUNDLE/
      config.json        {"format": "aromni", "decoder": {...}, "layout": {...},
                          "bundle": {"version": 1, "prompt_style": "official", "tokenizers": {...}, "generation": {...}}}
      model.safetensors  decoder weights (our layout)
      text/              text tokenizer directory   (tokenizer.json + config.json)
      image/             image tokenizer directory  (config.json + model.safetensors)
      speech/            speech tokenizer directory (config.json + model.safetensors)

``config.json`` is a superset of a decoder checkpoint's, so ``aromni.models.load_decoder(BUNDLE)`` works too.
Tokenizer entries may be absent (a text-only or image-only model); the layout still owns every id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aromni.errors import CheckpointError
from aromni.models.checkpoint.aromni_format import build_from_state, load_state, read_config, save_decoder
from aromni.models.decoder import Decoder
from aromni.tokenizers.base import Tokenizer, load_tokenizer
from aromni.utils.io import atomic_write_json, read_json
from aromni.vocab.conversation import PromptStyle, get_style
from aromni.vocab.layout import VocabLayout

BUNDLE_VERSION = 1
MODALITIES = ("text", "image", "speech")


@dataclass
class Bundle:
    """A loaded bundle.

    Attributes:
        decoder: the AR model.
        layout: vocabulary layout.
        text, image, speech: tokenizers (``None`` when the bundle has none for that modality).
        style: prompt style the model was trained with.
        generation: default generation options saved with the model (free-form dict).
        path: where it was loaded from.
    """

    decoder: Decoder
    layout: VocabLayout
    text: Any = None
    image: Any = None
    speech: Any = None
    style: PromptStyle = field(default_factory=lambda: get_style("official"))
    generation: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
             tokenizers: bool = True) -> Bundle:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: not a bundle (no config.json)", "pass a directory made by `aromni` "
                                  "(import-official, train, or the shipped toy bundle)")
        cfg, raw = read_config(path)
        if raw.get("layout") is None:
            raise CheckpointError(f"{path}: config.json has no vocabulary layout", "re-export the bundle")
        layout = VocabLayout.from_dict(raw["layout"])
        if layout.vocab_size != cfg.vocab_size:
            raise CheckpointError(f"{path}: layout has {layout.vocab_size} ids but the decoder {cfg.vocab_size}")
        decoder = build_from_state(cfg, load_state(path), dtype=dtype, device=device, source=str(path))
        meta = raw.get("bundle", {})
        toks: dict[str, Tokenizer | None] = {m: None for m in MODALITIES}
        if tokenizers:
            for m, sub in meta.get("tokenizers", {}).items():
                if m not in MODALITIES:
                    raise CheckpointError(f"{path}: unknown tokenizer modality {m!r}")
                if sub is not None:
                    if not (path / sub).is_dir():
                        raise CheckpointError(f"{path / sub}: tokenizer directory missing", "the bundle is incomplete")
                    toks[m] = load_tokenizer(path / sub)
                    if m != "text" and hasattr(toks[m], "to"):
                        toks[m] = toks[m].to(device).eval()
        if toks["text"] is not None and hasattr(toks["text"], "check_layout"):
            toks["text"].check_layout(layout)
        for m in ("image", "speech"):
            tok = toks[m]
            rng = getattr(layout, m)
            if tok is not None and tok.codebook_size != rng.size:
                raise CheckpointError(f"{path}: {m} tokenizer has {tok.codebook_size} codes, the layout {rng.size}",
                                      "the tokenizer and model come from different runs")
        return cls(decoder=decoder, layout=layout, style=get_style(meta.get("prompt_style", "official")),
                   generation=dict(meta.get("generation", {})), path=path, **toks)


def save_bundle(path: str | Path, decoder: Decoder, layout: VocabLayout, *, text: Any = None, image: Any = None,
                speech: Any = None, style: str | PromptStyle = "official", generation: dict[str, Any] | None = None,
                dtype: torch.dtype | None = None, extra: dict[str, Any] | None = None) -> None:
    """Write a bundle directory (weights in ``dtype`` when given, e.g. ``torch.float16`` for shipping)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    subdirs: dict[str, str | None] = {}
    for name, tok in (("text", text), ("image", image), ("speech", speech)):
        if tok is None:
            subdirs[name] = None
            continue
        if name != "text" and dtype is not None and hasattr(tok, "save_pretrained"):
            try:
                tok.save_pretrained(path / name, dtype=dtype)
            except TypeError:
                tok.save_pretrained(path / name)
        else:
            tok.save_pretrained(path / name)
        subdirs[name] = name
    bundle_meta = {"version": BUNDLE_VERSION, "prompt_style": get_style(style).name, "tokenizers": subdirs,
                   "generation": generation or {}}
    save_decoder(decoder, path, layout=layout, dtype=dtype, extra={"bundle": bundle_meta, **(extra or {})})


def read_bundle_config(path: str | Path) -> dict[str, Any]:
    return read_json(Path(path) / "config.json")
