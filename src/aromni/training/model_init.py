"""Build the decoder a run trains: from scratch, or from a bundle/checkpoint, then fit it to the data's layout.

* ``model.init_from`` empty: a fresh :class:`~aromni.models.Decoder` from ``model.decoder`` (``preset`` + field
  overrides; ``vocab_size`` defaults to the layout's), initialised with ``init_weights(model.init_std)``.
* ``model.init_from`` a directory: any checkpoint :func:`aromni.models.load_decoder` reads (an aromni bundle or
  checkpoint, Anole/AR-Omni in the Meta or Hugging Face layouts). Its layout is the one in its ``config.json``,
  else ``model.layout``, else the data's when the vocabulary sizes agree (the official 65,536-id layout).
* If the model's layout differs from the shard manifest's, the vocabulary is extended
  (:mod:`aromni.training.vocab_extension`) when ``model.extend_vocab.enabled``; otherwise it is an error.
* ``model.swin_norm`` forces residual-post-norm on or off (Table 7 ablation).
* ``model.image_embed_init`` (from scratch only) names a VQGAN tokenizer directory or a bundle holding one: the
  embedding rows of the image codes start as that VQGAN's codebook vectors, centred, mapped to the model width by
  a seeded random matrix with orthonormal columns and rescaled to the embedding table's std
  (:func:`init_image_embeddings`), so codes that draw alike start close together (docs/toyworld.md, "Image
  experiments": a T2I-only toy model with it reached 22.7% all five on held-out combinations in 900 steps).
"""

from __future__ import annotations

from pathlib import Path

import torch

from aromni.errors import ConfigError
from aromni.models import load_decoder
from aromni.models.decoder import Decoder
from aromni.tokenizers.base import load_tokenizer
from aromni.tokenizers.image.vqgan import VQGAN
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


def load_image_codebook(path: str | Path) -> torch.Tensor:
    """The codebook ``[n_embed, embed_dim]`` (float32) of the VQGAN in ``path``: a tokenizer directory, or a
    bundle whose ``config.json`` names its image tokenizer's subdirectory."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ConfigError(f"model.image_embed_init: {path} has no config.json",
                          "name a VQGAN tokenizer directory (e.g. RUN/tokenizer) or a bundle")
    raw = read_json(path / "config.json")
    if isinstance(raw, dict) and isinstance(raw.get("bundle"), dict):
        sub = (raw["bundle"].get("tokenizers") or {}).get("image")
        if not sub:
            raise ConfigError(f"model.image_embed_init: the bundle {path} has no image tokenizer")
        path = path / str(sub)
    tok = load_tokenizer(path)
    if not isinstance(tok, VQGAN):
        raise ConfigError(f"model.image_embed_init: {path} is a {type(tok).__name__}, not a VQGAN tokenizer")
    return tok.quantize.embedding.weight.detach().float().clone()


def project_codebook(codebook: torch.Tensor, dim: int, std: float, generator: torch.Generator) -> torch.Tensor:
    """Codebook ``[K, E]`` -> embedding rows ``[K, dim]``: centred, multiplied by a random ``[E, dim]`` matrix
    with orthonormal rows (E <= dim) or columns (E > dim), so distances between codes are kept (up to the
    projection when E > dim), then scaled to overall std ``std``."""
    k, e = codebook.shape
    gauss = torch.randn(max(e, dim), min(e, dim), generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(gauss)  # [max, min] with orthonormal columns
    proj = q.T if e <= dim else q  # [E, dim]
    rows = (codebook.double() - codebook.double().mean(0)) @ proj
    spread = rows.std()
    if not spread > 0:
        raise ConfigError("model.image_embed_init: the VQGAN codebook has no spread (all vectors equal)",
                          "use a trained tokenizer")
    return (rows * (std / spread)).float()


def init_image_embeddings(decoder: Decoder, layout: VocabLayout, codebook: torch.Tensor, *, seed: int = 0) -> None:
    """Overwrite the decoder's embedding rows of the image codes (``layout.image``; row ``layout.image.to_ids(c)``
    gets code ``c``) with :func:`project_codebook` of ``codebook [K, E]``, at the std of the current table.
    With tied embeddings the output rows change too."""
    n = layout.image.size
    if codebook.dim() != 2 or codebook.shape[0] != n:
        raise ConfigError(f"model.image_embed_init: the VQGAN has {codebook.shape[0]} codes but the layout "
                          f"{n} image ids", "use the tokenizer the shards were encoded with")
    weight = decoder.embed.weight
    with torch.no_grad():
        rows = project_codebook(codebook, weight.shape[1], float(weight.std()),
                                torch.Generator().manual_seed(seed))
        ids = layout.image.to_ids(torch.arange(n))
        weight[ids] = rows.to(weight.dtype)


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
        if cfg.image_embed_init:
            init_image_embeddings(decoder, layout, load_image_codebook(cfg.image_embed_init), seed=seed)
            notes["image_embed_init"] = cfg.image_embed_init
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
    if cfg.compile:
        # Per block and in place (nn.Module.compile): parameter names stay as they are, so checkpoints, FSDP2's
        # per-block sharding and the export see the plain module; the loss (fused LM head + CE) stays eager.
        for layer in decoder.layers:
            layer.compile()
        notes["compile"] = "each block (torch.compile)"
    return decoder.train(), layout, notes
