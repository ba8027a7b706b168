"""LlamaGen's VQ checkpoint files (``vq_ds16_t2i.pt``, ``vq_ds16_c2i.pt``, ``vq_train.py`` checkpoints).

The files are ``torch.save``d dicts. The released ones hold ``{"model": state_dict}``. ``vq_train.py``
also saves ``"ema"`` (with ``--ema``), ``"optimizer"``, ``"discriminator"``, ``"optimizer_disc"``,
``"steps"`` and ``"args"``, and ``args`` is an ``argparse.Namespace``. LlamaGen's own VQ loaders
(``vq_demo.py``, ``reconstruction_vq_ddp.py``) take ``"ema"``, else ``"model"``, else ``"state_dict"``. Its
GPT loaders also know ``"module"`` (DeepSpeed). :data:`WRAPPERS` follows that order.

Files are read only with ``torch.load(weights_only=True)`` (:mod:`aromni.utils.safe_load`). Only
``argparse.Namespace`` is added to the allow-list, because a training checkpoint stores its ``args`` as one.
Any other Python object makes the load fail with a :class:`CheckpointError`.

This module handles plain state dicts only. :meth:`LlamaGenVQ.from_llamagen
<aromni.tokenizers.image.llamagen_vq.LlamaGenVQ.from_llamagen>` builds the model from them.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import torch

from aromni.errors import CheckpointError, ConfigError
from aromni.tokenizers.image.llamagen_vq_config import PRESETS, LlamaGenVQConfig
from aromni.utils.safe_load import load_weights_only

#: Entries that can hold the model's state dict, in the order LlamaGen's VQ loaders try them.
WRAPPERS = ("ema", "model", "module", "state_dict")
#: ``vq_train.py`` arguments that it passes to the model and that are config fields. The weights do not record
#: them. (``--codebook-l2-norm`` is parsed but never passed, so LlamaGen's models always L2-normalise.)
ARG_FIELDS = ("commit_loss_beta", "entropy_loss_ratio", "dropout_p", "image_size")

StateDict = dict[str, torch.Tensor]


class LlamaGenFile(NamedTuple):
    """What :func:`read_llamagen_file` found: the state dict, the entry it came from (``""``: the file is the
    state dict itself), and the config values recorded in a training checkpoint's ``args`` (possibly none)."""

    state: StateDict
    entry: str
    args: dict[str, int | float]


@contextlib.contextmanager
def _namespace_allowed() -> Iterator[None]:
    """Inside the block, ``weights_only`` unpickling may also rebuild ``argparse.Namespace`` (only that)."""
    if hasattr(torch.serialization, "safe_globals"):  # torch >= 2.5: scoped allow-list
        with torch.serialization.safe_globals([argparse.Namespace]):
            yield
    else:  # torch 2.4 has only the process-wide list
        torch.serialization.add_safe_globals([argparse.Namespace])
        yield


def read_llamagen_file(path: str | Path, *, entry: str | None = None) -> LlamaGenFile:
    """Load a LlamaGen VQ checkpoint and pick its state dict.

    ``entry`` names the wrapper to use (one of :data:`WRAPPERS`). ``None`` takes the first one present, in
    LlamaGen's order. A file whose top level is already a dict of tensors is taken as the state dict.
    """
    path = Path(path)
    with _namespace_allowed():
        raw = load_weights_only(path)
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: holds a {type(raw).__name__}, not a dict",
                              "expected a LlamaGen VQ checkpoint ({'model': state_dict, ...})")
    state, used = _unwrap(raw, path, entry)
    bad = sorted(str(k) for k, v in state.items()
                 if not isinstance(k, str) or not isinstance(v, torch.Tensor))
    if bad or not state:
        raise CheckpointError(f"{path}: {used or 'the file'} is not a state dict of tensors "
                              f"({'empty' if not state else f'non-tensor entries {bad[:4]}'})",
                              "expected the VQ model's state_dict()")
    return LlamaGenFile(state, used, _config_args(raw.get("args")))


def _unwrap(raw: dict[object, object], path: Path, entry: str | None) -> tuple[StateDict, str]:
    if entry is not None:
        if entry not in WRAPPERS:
            raise CheckpointError(f"unknown checkpoint entry {entry!r}", f"one of {', '.join(WRAPPERS)}")
        if entry not in raw:
            raise CheckpointError(f"{path}: has no {entry!r} entry",
                                  f"entries present: {sorted(map(str, raw))[:8]}")
        return _as_state(raw[entry], path, entry), entry
    if raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        return _as_state(raw, path, ""), ""  # a bare state dict
    for name in WRAPPERS:
        if name in raw:
            return _as_state(raw[name], path, name), name
    raise CheckpointError(f"{path}: no model weights (none of the entries {', '.join(WRAPPERS)})",
                          f"entries present: {sorted(map(str, raw))[:8]}")


def _as_state(value: object, path: Path, entry: str) -> StateDict:
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: entry {entry!r} holds a {type(value).__name__}, not a state dict",
                              "expected the VQ model's state_dict()")
    return dict(value)


def _config_args(args: object) -> dict[str, int | float]:
    """The config values that a ``vq_train.py`` ``args`` Namespace records (those of the right type)."""
    if not isinstance(args, argparse.Namespace):
        return {}
    out: dict[str, int | float] = {}
    for name in ARG_FIELDS:
        value = getattr(args, name, None)
        kinds = (int,) if name == "image_size" else (int, float)
        if isinstance(value, kinds) and not isinstance(value, bool):
            out[name] = value
    return out


def check_state(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly the keys and shapes of ``expected``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source}: state dict keys do not match the model (missing {len(missing)}: "
                              f"{missing[:6]}, unexpected {len(unexpected)}: {unexpected[:6]})",
                              "the weights and the config come from different models")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: {k} has shape {tuple(state[k].shape)}, the config expects "
                                  f"{tuple(v.shape)}",
                                  "the weights and the config come from different models")


def _levels(state: Mapping[str, torch.Tensor], side: str) -> list[int]:
    """Output widths of ``{side}.conv_blocks.{l}``, in stored order (read from each level's first conv)."""
    found = {}
    for k, v in state.items():
        m = re.fullmatch(rf"{side}\.conv_blocks\.(\d+)\.res\.0\.conv1\.weight", k)
        if m:
            found[int(m.group(1))] = int(v.shape[0])
    if sorted(found) != list(range(len(found))) or not found:
        raise CheckpointError(f"cannot read the {side} levels from the state dict (levels {sorted(found)})",
                              "is this a LlamaGen VQ checkpoint?")
    return [found[i] for i in range(len(found))]


def infer_config(state: Mapping[str, torch.Tensor], source: str, **overrides: object) -> LlamaGenVQConfig:
    """The config whose model has ``state``'s shapes: codebook, widths, levels, block count, usage buffer.

    The loss weights, ``codebook_l2_norm``, ``dropout_p`` and ``image_size`` do not show in the weights. They
    come from ``overrides``, else from the matching preset, else from the defaults.
    """
    try:
        n_codes, dim = state["quantize.embedding.weight"].shape
        z_channels = int(state["quant_conv.weight"].shape[1])
        ch = int(state["encoder.conv_in.weight"].shape[0])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{source}: cannot read the architecture ({e})",
                              "is this a LlamaGen VQ checkpoint?") from None
    enc, dec = _levels(state, "encoder"), _levels(state, "decoder")
    n_res = sum(1 for k in state if re.fullmatch(r"encoder\.conv_blocks\.0\.res\.\d+\.conv1\.weight", k))
    if any(w % ch for w in enc + dec):
        raise CheckpointError(f"{source}: level widths {enc} / {dec} are not multiples of conv_in's {ch}")
    arch: dict[str, object] = {
        "codebook_size": int(n_codes), "codebook_embed_dim": int(dim), "z_channels": z_channels, "ch": ch,
        "num_res_blocks": n_res, "codebook_show_usage": "quantize.codebook_used" in state,
        "encoder_ch_mult": [w // ch for w in enc],
        "decoder_ch_mult": [w // ch for w in reversed(dec)],  # decoder levels are stored deepest first
    }
    try:
        base = LlamaGenVQConfig.from_dict(arch).preset_name()
        return LlamaGenVQConfig.from_dict({**(PRESETS[base] if base else {}), **arch, **overrides})
    except ConfigError as e:
        raise CheckpointError(f"{source}: {e.problem}", e.hint) from None
