"""Layout detection and the format-agnostic entry points :func:`load_decoder` and :func:`save_checkpoint`.

Detection rules, in order (``path`` may be a directory or a file inside it):

1. ``config.json`` with ``"format": "aromni"``                          -> ``aromni``
2. ``config.json`` with ``"model_type": "chameleon"`` and weight files   -> ``hf`` or ``hf-anole`` (rank of
   ``q_norm.weight``: ``[n_heads, head_dim]`` upstream, ``[head_dim]`` Anole/AR-Omni)
3. ``params.json`` here, or ``models/<size>/params.json`` below          -> ``meta``
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from aromni.errors import CheckpointError
from aromni.models.checkpoint import aromni_format, hf_format, meta_format
from aromni.models.checkpoint.tensor_files import pth_files, safetensors_files
from aromni.models.decoder import Decoder
from aromni.utils.io import JSONValue

FORMATS = ("aromni", "hf", "hf-anole", "meta")


def _resolve(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory", "check the checkpoint path")
    return path.parent if path.is_file() else path


def _config(path: Path) -> dict[str, JSONValue] | None:
    f = path / "config.json"
    if not f.is_file():
        return None
    try:
        raw = json.loads(f.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # not ours to judge here; the format-specific reader reports it if it matters
    return raw if isinstance(raw, dict) else None


def detect_format(path: str | Path) -> str:
    """One of :data:`FORMATS` for the checkpoint at ``path``, or a CheckpointError saying what was expected."""
    path = _resolve(path)
    raw = _config(path)
    if raw is not None and raw.get("format") == aromni_format.FORMAT:
        return "aromni"
    if raw is not None and raw.get("model_type") == "chameleon" and (
            safetensors_files(path) is not None or pth_files(path) is not None):
        return hf_format.detect_hf_variant(hf_format.open_hf_weights(path), raw)
    if meta_format.find_model_dir(path) is not None:
        return "meta"
    if raw is not None and raw.get("model_type") == "chameleon":
        raise CheckpointError(f"{path}: config.json is a Chameleon config but no weight files are next to it",
                              "expected model.safetensors, model.safetensors.index.json or pytorch_model.bin")
    if (path / "config.json").is_file() and raw is None:
        raise CheckpointError(f"{path / 'config.json'}: not valid JSON", "restore or re-export the checkpoint")
    if any(path.glob("consolidated*.pth")):
        raise CheckpointError(f"{path}: consolidated weights without params.json",
                              "a Meta checkpoint needs its params.json (and consolidate_params.json) next to them")
    raise CheckpointError(f"{path}: not a recognised decoder checkpoint",
                          "expected an aromni directory (config.json + model.safetensors), an HF Chameleon "
                          "directory, or a Meta directory (params.json + consolidated.pth)")


def load_decoder(path: str | Path, dtype: torch.dtype | None = None, device: torch.device | str = "cpu",
                 *, format: str | None = None) -> Decoder:
    """Load a decoder from any supported layout (detected unless ``format`` is given).

    The model is built on the meta device and the (memory-mapped) weights are assigned to it, converted to
    ``dtype`` if given (otherwise the stored dtype is kept). Returns the model in eval mode.
    """
    resolved = _resolve(path)
    fmt = format or detect_format(resolved)
    if fmt == "aromni":
        return aromni_format.load_decoder(resolved, dtype=dtype, device=device)
    if fmt in ("hf", "hf-anole"):
        return hf_format.load_hf(resolved, dtype=dtype, device=device, variant=fmt)
    if fmt == "meta":
        return meta_format.load_meta(resolved, dtype=dtype, device=device)
    raise CheckpointError(f"unknown checkpoint format {fmt!r}", f"one of {', '.join(FORMATS)}")


def save_checkpoint(decoder: Decoder, path: str | Path, format: str = "aromni", *, dtype: torch.dtype | None = None,
                    **options: object) -> None:
    """Write ``decoder`` to directory ``path`` in ``format`` (see :data:`FORMATS`).

    ``options`` go to the format's saver: ``layout``/``extra`` (aromni), ``extra_config``/``extra_tensors``/
    ``max_shard_bytes`` (hf, hf-anole), ``num_shards`` (meta).
    """
    if format == "aromni":
        aromni_format.save_decoder(decoder, path, dtype=dtype, **options)
    elif format in ("hf", "hf-anole"):
        hf_format.save_hf(decoder, path, anole=format == "hf-anole", dtype=dtype, **options)
    elif format == "meta":
        meta_format.save_meta(decoder, path, dtype=dtype, **options)
    else:
        raise CheckpointError(f"unknown checkpoint format {format!r}", f"one of {', '.join(FORMATS)}")
