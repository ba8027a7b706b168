"""Reading the official WavTokenizer ``.ckpt`` files (official-formats reference §A.7).

The checkpoint's ``state_dict`` holds the generator (encoder, quantizer, backbone, head), an unused SEANet
decoder and the GAN discriminators. We keep the generator, fold the encoder's weight norm
(``W = g * V / ||V||`` per output channel) into plain conv weights, and rename keys to our layout:

=====================================================================  ===============================
official                                                               ours
=====================================================================  ===============================
``feature_extractor.encodec.encoder.model.N[.block.M|.shortcut].conv.conv.{weight_g,weight_v,bias}``  ``encoder.model.N[...].{weight,bias}``
``feature_extractor.encodec.encoder.model.13.lstm.*``                  ``encoder.model.13.lstm.*``
``feature_extractor.encodec.quantizer.vq.layers.0._codebook.*``        ``quantizer.*``
``backbone.*``, ``head.out.*``                                         unchanged
``head.istft.window``                                                  ``head.window``
=====================================================================  ===============================

``...parametrizations.weight.original0/1`` (the newer torch weight-norm spelling) is read as ``weight_g/_v``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from aromni.errors import CheckpointError
from aromni.utils.safe_load import load_pth

log = logging.getLogger(__name__)

ENCODER = "feature_extractor.encodec.encoder."
QUANTIZER = "feature_extractor.encodec.quantizer.vq.layers.0._codebook."
UNUSED_DECODER = "feature_extractor.encodec.decoder."
GENERATOR_PREFIXES = ("feature_extractor.", "backbone.", "head.")
_PARAMETRIZED = {".parametrizations.weight.original0": ".weight_g", ".parametrizations.weight.original1": ".weight_v"}


def load_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of an official ``.ckpt`` (tensors only; memory-mapped where the format allows).

    Reading goes through :func:`~aromni.utils.safe_load.load_pth` (``weights_only=True``; a pickle
    that needs arbitrary Python objects is refused with a :class:`CheckpointError`).
    """
    path = Path(path)
    obj = load_pth(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    elif not (isinstance(obj, Mapping) and any(str(k).startswith(GENERATOR_PREFIXES) for k in obj)):
        raise CheckpointError(f"{path}: no 'state_dict' with WavTokenizer weights in the checkpoint",
                              "pass an official WavTokenizer .ckpt")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state_dict entry {bad[0]!r} is not a tensor")
    return dict(obj)


def map_official_key(key: str) -> tuple[str, str | None] | None:
    """Official generator key -> ``(our key, role)``; role is ``"g"``/``"v"`` for weight-norm halves.

    Returns None for keys outside the generator layout we know.
    """
    if key.startswith(ENCODER):
        rest = key[len(ENCODER):]
        for old, new in _PARAMETRIZED.items():
            rest = rest.replace(old, new)
        rest = rest.replace(".conv.conv.", ".")
        for suffix, role in ((".weight_g", "g"), (".weight_v", "v")):
            if rest.endswith(suffix):
                return f"encoder.{rest[: -len(suffix)]}.weight", role
        return f"encoder.{rest}", None
    if key.startswith(QUANTIZER):
        return f"quantizer.{key[len(QUANTIZER):]}", None
    if key == "head.istft.window":
        return "head.window", None
    if key.startswith(("backbone.", "head.")):
        return key, None
    return None


def official_name(our_key: str) -> str:
    """The official key our key comes from (for error messages; weight-norm weights name ``weight_v``)."""
    if our_key.startswith("encoder."):
        rest = our_key[len("encoder."):]
        if ".lstm." in rest:
            return ENCODER + rest
        base, leaf = rest.rsplit(".", 1)
        return f"{ENCODER}{base}.conv.conv.{'weight_v' if leaf == 'weight' else leaf}"
    if our_key.startswith("quantizer."):
        return QUANTIZER + our_key[len("quantizer."):]
    return "head.istft.window" if our_key == "head.window" else our_key


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``g * v / ||v||`` with the norm over all dims but 0 (``weight_norm(dim=0)``)."""
    norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
    return v * (g.reshape(norm.shape) / norm)


def convert_official_state(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                           source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Official ``state_dict`` -> our state dict, checked strictly against ``expected`` (our model's keys/shapes).

    Raises :class:`CheckpointError` naming the first missing, unexpected or mis-shaped generator key.
    """
    plain: dict[str, tuple[str, torch.Tensor]] = {}
    halves: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    ignored_decoder, ignored_other, unexpected = [], [], []
    for key, tensor in state.items():
        if key.startswith(UNUSED_DECODER):
            ignored_decoder.append(key)
            continue
        if not key.startswith(GENERATOR_PREFIXES):
            ignored_other.append(key)
            continue
        mapped = map_official_key(key)
        if mapped is None or mapped[0] not in expected:
            unexpected.append(key)
        elif mapped[1] is None:
            plain[mapped[0]] = (key, tensor)
        else:
            halves.setdefault(mapped[0], {})[mapped[1]] = (key, tensor)
    log.debug("%s: ignored %d unused SEANet-decoder keys and %d non-generator keys (e.g. %s)", source,
              len(ignored_decoder), len(ignored_other), ignored_other[:3])
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{source}: unexpected generator key {unexpected[0]!r}{more}",
                              "the checkpoint does not match the yaml architecture")
    out = {ours: _check_shape(ours, key, t, expected[ours], source) for ours, (key, t) in plain.items()}
    for ours, parts in halves.items():
        out[ours] = _fold(ours, parts, plain, expected[ours], source)
    missing = [k for k in expected if k not in out]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(f"{source}: missing generator key {official_name(missing[0])!r}{more}",
                              "the checkpoint does not match the yaml architecture, or is truncated")
    return out


def _check_shape(ours: str, key: str, t: torch.Tensor, ref: torch.Tensor, source: str) -> torch.Tensor:
    if tuple(t.shape) != tuple(ref.shape):
        raise CheckpointError(f"{source}: {key} has shape {tuple(t.shape)}, the architecture expects "
                              f"{tuple(ref.shape)}", "the checkpoint does not match the yaml")
    if t.is_floating_point() != ref.is_floating_point():
        raise CheckpointError(f"{source}: {key} has dtype {t.dtype}, expected a {ref.dtype} tensor")
    return t.to(ref.dtype) if t.dtype != ref.dtype else t


def _fold(ours: str, parts: dict[str, tuple[str, torch.Tensor]], plain: Mapping[str, object],
          ref: torch.Tensor, source: str) -> torch.Tensor:
    if ours in plain:
        raise CheckpointError(f"{source}: {plain[ours][0]!r} appears both plain and weight-normed")  # type: ignore[index]
    if "v" not in parts or "g" not in parts:
        have_key = next(iter(parts.values()))[0]
        other = "weight_v" if "v" not in parts else "weight_g"
        missing = have_key.rsplit(".", 1)[0] + "." + other if "parametrizations" not in have_key else \
            have_key[:-1] + ("1" if other == "weight_v" else "0")
        raise CheckpointError(f"{source}: missing generator key {missing!r}", "the checkpoint is truncated")
    (vkey, v), (gkey, g) = parts["v"], parts["g"]
    v = _check_shape(ours, vkey, v, ref, source)
    if g.numel() != v.shape[0]:
        raise CheckpointError(f"{source}: {gkey} has shape {tuple(g.shape)}, expected ({v.shape[0]}, 1, 1)")
    return fold_weight_norm(g.to(v.dtype), v)
