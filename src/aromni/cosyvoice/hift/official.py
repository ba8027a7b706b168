"""Loading CosyVoice2's released ``hift.pt`` into :class:`HiFTGenerator` (the ``cosyvoice2`` preset), strictly.

What the file holds (facts from CosyVoice's code; the weights themselves are not reachable here):

- a flat state dict, read by ``CosyVoice2Model.load`` with ``torch.load(..., weights_only=True)``, a
  ``generator.`` prefix stripped "in case hift_model is a hifigan model" (a checkpoint of the GAN wrapper);
- weight-normalised convolutions (``f0_predictor.condnet.{0,2,4,6,8}``, ``conv_pre``, ``ups.*``, ``conv_post``,
  every ``convs1.*`` / ``convs2.*`` of ``resblocks.*`` and ``source_resblocks.*``) saved either as
  ``weight_g`` / ``weight_v`` (``torch.nn.utils.weight_norm``, what CosyVoice's code imported until January 2025,
  after the CosyVoice2 release) or as ``parametrizations.weight.original0`` / ``original1``
  (``torch.nn.utils.parametrizations.weight_norm``, imported since; torch renames the old keys on load). Both are
  accepted here: ``weight_g`` is ``original0`` (the norm), ``weight_v`` is ``original1`` (the direction);
- plain ``weight`` / ``bias`` for ``source_downs.*``, ``m_source.l_linear`` and ``f0_predictor.classifier``, and
  ``alpha`` for the Snake activations (``activations1.*`` / ``activations2.*``). No buffers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from aromni.cosyvoice.hift.config import HiFTConfig
from aromni.cosyvoice.hift.generator import HiFTGenerator, load_strict
from aromni.errors import CheckpointError
from aromni.utils.safe_load import load_pth

__all__ = ["load_official_hift", "official_to_ours"]

_RENAMES = ((".weight_g", ".parametrizations.weight.original0"), (".weight_v", ".parametrizations.weight.original1"))


def official_to_ours(state: dict[str, object], source: str = "hift.pt") -> dict[str, torch.Tensor]:
    """CosyVoice's HiFT state dict (either weight-norm spelling, optionally ``generator.``-prefixed) -> ours."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: {key} holds a {type(value).__name__}, not a tensor",
                                  "pass CosyVoice2's hift.pt (a state dict of tensors)")
        name = key.removeprefix("generator.")
        for old, new in _RENAMES:
            if name.endswith(old):
                name = name[: -len(old)] + new
        out[name] = value.float()
    return out


def load_official_hift(path: str | Path, config: HiFTConfig | None = None) -> HiFTGenerator:
    """CosyVoice2's ``hift.pt`` -> :class:`HiFTGenerator` in eval mode (``config``: the ``cosyvoice2`` preset
    unless given). Every key must match: a missing, unexpected or mis-shaped one raises a one-line
    :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file", "pass the hift.pt of a CosyVoice2 model directory")
    state = official_to_ours(load_pth(path), str(path))
    model = HiFTGenerator(config or HiFTConfig.preset("cosyvoice2"))
    load_strict(model, state, str(path))
    return model.eval()
