"""Export the trained decoder as a bundle, with tokenizers copied from a bundle or tokenizer directories."""

from __future__ import annotations

from pathlib import Path

import torch

from aromni.bundle import save_bundle
from aromni.errors import ConfigError
from aromni.models.config import DecoderConfig
from aromni.models.decoder import Decoder
from aromni.tokenizers.base import Tokenizer, load_tokenizer
from aromni.training.config import ExportConfig
from aromni.utils.io import atomic_dir, read_json
from aromni.vocab.layout import VocabLayout

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def export_tokenizers(cfg: ExportConfig) -> dict[str, Tokenizer | None]:
    """Tokenizers to put in the bundle: ``cfg.text/image/speech`` directories, else those of ``tokenizers_from``."""
    dirs: dict[str, Path | None] = {m: None for m in ("text", "image", "speech")}
    if cfg.tokenizers_from:
        src = Path(cfg.tokenizers_from)
        meta = read_json(src / "config.json").get("bundle", {}).get("tokenizers", {})
        for m, sub in meta.items():
            if sub and m in dirs:
                dirs[m] = src / sub
    for m in dirs:
        if getattr(cfg, m):
            dirs[m] = Path(getattr(cfg, m))
    return {m: load_tokenizer(d) if d is not None else None for m, d in dirs.items()}


def export_bundle(path: str | Path, decoder_cfg: DecoderConfig, layout: VocabLayout, model_state: dict[str, torch.Tensor],
                  cfg: ExportConfig) -> None:
    """Write ``path`` (replacing a previous export of the same run) from the ``decoder.*`` entries of a state."""
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"export.dtype must be one of {sorted(DTYPES)}, got {cfg.dtype!r}")
    dec_state = {k.removeprefix("decoder."): v for k, v in model_state.items() if k.startswith("decoder.")}
    with torch.device("meta"):
        decoder = Decoder(decoder_cfg)
    decoder.load_state_dict(dec_state, assign=True, strict=not decoder_cfg.tie_embeddings)
    toks = export_tokenizers(cfg)
    with atomic_dir(path, overwrite=True) as tmp:
        save_bundle(tmp, decoder, layout, style=cfg.style, dtype=DTYPES[cfg.dtype], **toks)
