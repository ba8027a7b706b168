"""Loading CosyVoice2's released ``flow.pt`` (the state dict of ``CausalMaskedDiffWithXvec``) into the
``cosyvoice2`` preset of :class:`~aromni.cosyvoice.flow.model.Token2Mel`: read with ``torch.load(weights_only=True)``
(:func:`aromni.utils.safe_load.load_pth`), every key matched, strict, shapes checked; any mismatch is one
:class:`~aromni.errors.CheckpointError` line naming the missing and unexpected keys.
"""

from __future__ import annotations

from pathlib import Path

import torch

from aromni.cosyvoice.flow.config import FlowConfig
from aromni.cosyvoice.flow.model import Token2Mel
from aromni.errors import CheckpointError
from aromni.utils.safe_load import load_pth

__all__ = ["load_official_flow", "load_official_state"]


def _names(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "") if keys else "none"


def load_official_state(model: Token2Mel, state: dict[str, object], source: str) -> Token2Mel:
    """Copy a released flow state dict into ``model`` (strict: every key, every shape)."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{source}: not a CosyVoice2 flow state dict for this config: missing keys "
                              f"[{_names(missing)}], unexpected keys [{_names(unexpected)}]",
                              "pass CosyVoice2-0.5B's flow.pt with the cosyvoice2 preset (or matching overrides)")
    bad = [k for k in own if not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        got = tuple(state[k].shape) if isinstance(state[k], torch.Tensor) else type(state[k]).__name__
        raise CheckpointError(f"{source}: {len(bad)} tensors of the wrong shape, e.g. {k}: {got} vs "
                              f"{tuple(own[k].shape)}", "the checkpoint was made with other sizes; pass overrides")
    model.load_state_dict({k: state[k] for k in own}, strict=True)
    return model.eval()


def load_official_flow(path: str | Path, *, preset: str = "cosyvoice2", **overrides: object) -> Token2Mel:
    """A released ``flow.pt`` -> :class:`Token2Mel` of ``preset`` (+ ``overrides``, e.g. a scaled-down test)."""
    path = Path(path)
    state = load_pth(path)
    model = Token2Mel(FlowConfig.preset(preset, **overrides))
    return load_official_state(model, {k: v.float() if isinstance(v, torch.Tensor) else v for k, v in state.items()},
                               str(path))
