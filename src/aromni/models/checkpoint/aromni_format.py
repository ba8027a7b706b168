"""Our checkpoint format: a directory with ``config.json`` and ``model.safetensors``.

``config.json`` holds ``{"format": "aromni", "decoder": DecoderConfig, "layout": VocabLayout | null}``; the
weights are the decoder's own state dict (see :mod:`aromni.models.decoder` for the conventions).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.models.checkpoint.tensor_files import check_floating
from aromni.models.config import DecoderConfig
from aromni.models.decoder import Decoder
from aromni.utils.io import JSONValue, atomic_path, atomic_write_json, read_json
from aromni.vocab.layout import VocabLayout

FORMAT = "aromni"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def save_decoder(decoder: Decoder, path: str | Path, *, layout: VocabLayout | None = None, dtype: torch.dtype | None = None,
                 extra: dict[str, JSONValue] | None = None) -> None:
    """Write ``decoder`` (and optionally its vocabulary layout) to directory ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous()
             for k, v in decoder.state_dict().items()}
    if decoder.cfg.tie_embeddings:
        state.pop("lm_head.weight", None)  # safetensors refuses shared storage; re-tied on load
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    config: dict[str, JSONValue] = {"format": FORMAT, "decoder": decoder.cfg.to_dict(),
                              "layout": None if layout is None else layout.to_dict()}
    if extra:
        config.update(extra)
    atomic_write_json(path / CONFIG, config)


def read_config(path: str | Path) -> tuple[DecoderConfig, dict[str, JSONValue]]:
    try:
        raw = read_json(Path(path) / CONFIG)
    except InputError as e:
        raise CheckpointError(e.problem, "an aromni checkpoint holds config.json and model.safetensors") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("decoder"), dict):
        raise CheckpointError(f"{path}: config.json is not an aromni checkpoint config",
                              "expected {\"format\": \"aromni\", \"decoder\": {...}}")
    try:
        return DecoderConfig.from_dict(raw["decoder"]), raw
    except ConfigError as e:
        raise CheckpointError(f"{Path(path) / CONFIG}: {e.problem}", e.hint) from None


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    weights = Path(path) / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing", "an aromni checkpoint holds config.json and model.safetensors")
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({e})", "re-export the checkpoint") from None


def build_from_state(cfg: DecoderConfig, state: dict[str, torch.Tensor], *, dtype: torch.dtype | None = None,
                     device: torch.device | str = "cpu", source: str = "checkpoint") -> Decoder:
    """Build a :class:`Decoder` on the meta device and assign ``state`` (our key layout) to it, strictly."""
    with torch.device("meta"):
        model = Decoder(cfg)
    expected = {k: v for k, v in model.state_dict().items()}
    if cfg.tie_embeddings:
        expected.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = (f"tensor {missing[0]!r} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                if missing else f"unexpected tensor {unexpected[0]!r}"
                + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
        raise CheckpointError(f"{source}: {what}", "the weights and config.json come from different models")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: {k} has shape {tuple(state[k].shape)}, config expects {tuple(v.shape)}",
                                  "the weights and config.json come from different models")
        check_floating(k, state[k].dtype, source)
    state = {k: v.to(device=device, dtype=dtype if dtype is not None and v.is_floating_point() else v.dtype)
             for k, v in state.items()}
    model.load_state_dict(state, strict=not cfg.tie_embeddings, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    return model.eval()


def load_decoder(path: str | Path, dtype: torch.dtype | None = None, device: torch.device | str = "cpu") -> Decoder:
    """Load a decoder checkpoint in the aromni format from directory ``path``.

    :func:`aromni.models.load_decoder` detects every supported layout; this one reads only ours.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint", "check the path")
    cfg, _ = read_config(path)
    return build_from_state(cfg, load_state(path), dtype=dtype, device=device, source=str(path))
