"""Build the decoder a run trains: from scratch, or from a bundle/checkpoint, then fit it to the data's layout.

* ``model.init_from`` empty: a fresh :class:`~aromni.models.Decoder` from ``model.decoder`` (``preset`` + field
  overrides; ``vocab_size`` defaults to the layout's), initialised with ``init_weights(model.init_std)``.
* ``model.init_from`` a directory: any checkpoint :func:`aromni.models.load_decoder` reads (an aromni bundle or
  checkpoint, Anole/AR-Omni in the Meta or Hugging Face layouts). Its layout is the one in its ``config.json``,
  else ``model.layout``, else the data's when the vocabulary sizes agree (the official 65,536-id layout).
* If the model's layout differs from the shard manifest's, the vocabulary is extended
  (:mod:`aromni.training.vocab_extension`) when ``model.extend_vocab.enabled``; otherwise it is an error.
* ``model.swin_norm`` forces residual-post-norm on or off (Table 7 ablation).
"""

from __future__ import annotations

from pathlib import Path

import torch

from aromni.errors import ConfigError
from aromni.models import load_decoder
from aromni.models.decoder import Decoder
from aromni.training.config import ModelConfig, decoder_config
from aromni.training.vocab_extension import extend_vocabulary
from aromni.utils.io import read_json
from aromni.vocab.layout import VocabLayout


def _layout_of_checkpoint(path: Path) -> VocabLayout | None:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        return None
    raw = read_json(cfg_file)
    if isinstance(raw, dict) and raw.get("format") == "aromni" and raw.get("layout"):
        return VocabLayout.from_dict(raw["layout"])
    return None


def set_swin_norm(decoder: Decoder, on: bool) -> None:
    decoder.cfg = decoder.cfg.replace(swin_norm=on)
    for block in decoder.layers:
        block.swin_norm = on


def build_decoder(cfg: ModelConfig, data_layout: VocabLayout, *, seed: int = 0
                  ) -> tuple[Decoder, VocabLayout, dict[str, str]]:
    """Returns ``(decoder in train mode, its final layout, notes for the log)``."""
    gen = torch.Generator().manual_seed(seed)
    notes: dict[str, str] = {}
    explicit = VocabLayout.from_dict(read_json(cfg.layout)) if cfg.layout else None
    if not cfg.init_from:
        layout = explicit or data_layout
        dcfg = decoder_config(cfg.decoder, layout.vocab_size)
        if cfg.swin_norm is not None:
            dcfg = dcfg.replace(swin_norm=cfg.swin_norm)
        decoder = Decoder(dcfg)
        decoder.init_weights(cfg.init_std, generator=gen)
        notes["init"] = "scratch"
    else:
        path = Path(cfg.init_from)
        decoder = load_decoder(path)
        decoder.float()
        layout = _layout_of_checkpoint(path) or explicit
        if layout is None:
            if decoder.cfg.vocab_size != data_layout.vocab_size:
                raise ConfigError(f"{path} carries no vocabulary layout and its {decoder.cfg.vocab_size} rows differ "
                                  f"from the data's {data_layout.vocab_size}", "set model.layout to its layout JSON")
            layout = data_layout
        if cfg.swin_norm is not None and cfg.swin_norm != decoder.cfg.swin_norm:
            set_swin_norm(decoder, cfg.swin_norm)
        notes["init"] = str(path)
    if decoder.cfg.vocab_size != layout.vocab_size:
        raise ConfigError(f"decoder has {decoder.cfg.vocab_size} rows but its layout {layout.vocab_size}",
                          "model.decoder.vocab_size must match the layout")
    if layout != data_layout:
        if not cfg.extend_vocab.enabled:
            raise ConfigError("the model's vocabulary layout differs from the data's",
                              "enable model.extend_vocab or rebuild the shards with the model's layout")
        old_v = layout.vocab_size
        extend_vocabulary(decoder, layout, data_layout, init=cfg.extend_vocab.init,
                          noise_std=cfg.extend_vocab.noise_std, generator=gen)
        notes["extended_vocab"] = f"{old_v} -> {data_layout.vocab_size}"
        layout = data_layout
    decoder.gradient_checkpointing = cfg.gradient_checkpointing
    return decoder.train(), layout, notes
