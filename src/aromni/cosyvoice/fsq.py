"""CosyVoice2's finite scalar quantiser (FSQ) with three levels per dimension.

The released ``speech_tokenizer_v2`` quantises an encoder state ``x [..., d]`` as (S3Tokenizer's
``FSQCodebook.encode``, reference §3.1)::

    h = tanh(Linear(d -> D)(x)) * 0.999     # in (-1, 1)
    q = round(h)                             # in {-1, 0, 1}
    token = sum_j (q_j + 1) * 3**j           # in [0, 3**D)

with ``D = 8`` (6561 codes). Training needs a gradient through ``round``: the straight-through estimator passes
``dq/dh = 1``. The paper's second encoder half reads the quantised levels through ``Proj_up`` (``Linear(D -> d)``);
the release ships no up-projection, so it only exists in a trained model of ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["FSQ", "FSQOutput", "LEVELS", "SCALE"]

#: Levels per dimension ({-1, 0, 1}).
LEVELS = 3
#: The released model's factor before rounding (float32 of 0.999: tanh can never round to +-2).
SCALE = 0.999


@dataclass
class FSQOutput:
    """One quantisation: ``levels [..., D]`` in {-1, 0, 1} (carrying the straight-through gradient),
    ``codes [...]`` (long, in ``[0, 3**D)``) and ``up [..., d]`` (``Proj_up(levels)``)."""

    levels: torch.Tensor
    codes: torch.Tensor
    up: torch.Tensor


class FSQ(nn.Module):
    """``Proj_down`` -> tanh * 0.999 -> round (straight-through) -> index, plus ``Proj_up``.

    Args:
        dim: width ``d`` of the encoder state.
        code_dims: ``D``, the number of three-level dimensions (codebook size ``3**D``).
    """

    def __init__(self, dim: int, code_dims: int):
        super().__init__()
        self.code_dims = code_dims
        self.project_down = nn.Linear(dim, code_dims)
        self.project_up = nn.Linear(code_dims, dim)
        self.register_buffer("powers", LEVELS ** torch.arange(code_dims), persistent=False)

    @property
    def codebook_size(self) -> int:
        return LEVELS ** self.code_dims

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [..., d]`` -> ``(levels [..., D] float in {-1, 0, 1} with the STE gradient, codes [...] long)``."""
        h = torch.tanh(self.project_down(x).float()) * SCALE
        q = h + (torch.round(h) - h).detach()  # forward: round(h); backward: identity
        return q, self.levels_to_codes(q.detach())

    def levels_to_codes(self, levels: torch.Tensor) -> torch.Tensor:
        """``levels [..., D]`` in {-1, 0, 1} -> ``codes [...]`` = ``sum_j (levels_j + 1) * 3**j`` (long)."""
        return ((levels.round().long() + 1) * self.powers).sum(-1)

    def codes_to_levels(self, codes: torch.Tensor) -> torch.Tensor:
        """The inverse: ``codes [...]`` (long, in ``[0, 3**D)``) -> ``levels [..., D]`` float in {-1, 0, 1}."""
        return (codes.long().unsqueeze(-1) // self.powers % LEVELS - 1).float()

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [...]`` -> ``Proj_up(levels) [..., d]``: what the second encoder half reads."""
        return self.project_up(self.codes_to_levels(codes).to(self.project_up.weight.dtype))

    def forward(self, x: torch.Tensor) -> FSQOutput:
        """``x [..., d]`` -> :class:`FSQOutput` (``up [..., d]`` differentiable back to ``x``)."""
        levels, codes = self.quantize(x)
        return FSQOutput(levels, codes, self.project_up(levels.to(x.dtype)))
