"""Weighted next-token prediction (paper eq. 2) plus the perceptual term (eq. 3-4), on packed batches.

Eq. 2 writes ``L = -(1/T) sum_t w_t log p(x_t | x_<t)``. The official code normalises by the weights instead,
``sum_t w_t ce_t / sum_t w_t``, so up-weighting a few tail tokens does not inflate the loss scale; that is our
default (``loss.normalize: weight``); ``tokens`` divides by the number of counted targets (eq. 2's ``1/T``).

To make gradient accumulation and data parallelism exact, the normaliser is the total over the *whole
optimizer step* (every micro-batch on every rank), computed from the batches before the forward passes; each
micro-batch contributes ``sum(w * ce) / total``. The step's gradient is then the gradient of the loss of the
whole global batch, whatever the split, and a run on N processes follows the same trajectory as one process
accumulating N times as many micro-batches.

The cross-entropy is fused with the LM head (:mod:`aromni.training.fused_ce`): only positions with weight > 0
go through it, ``chunk_size`` positions at a time, with the gradient computed in the same pass, so at most one
``[chunk, V]`` float32 block is alive instead of ``[B, T, V]`` logits, their log-softmax and two gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from aromni.models.decoder import Decoder
from aromni.training.fused_ce import fused_linear_ce
from aromni.training.perceptual import PerceptualHead


def _chunk_ce(head: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor, t: torch.Tensor, w: torch.Tensor
              ) -> torch.Tensor:
    return (F.cross_entropy(head(h), t, reduction="none") * w).sum()


def reference_ce_sum(h: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor], t: torch.Tensor,
                     w: torch.Tensor, chunk_size: int = 0) -> torch.Tensor:
    """Plain autograd ``sum w * CE(head(h), t)`` over ``h [N, D]`` (chunks recomputed in backward if chunked)."""
    if chunk_size <= 0 or h.shape[0] <= chunk_size:
        return _chunk_ce(head, h, t, w)
    total = h.new_zeros((), dtype=torch.float32)
    for a in range(0, h.shape[0], chunk_size):
        total = total + checkpoint(_chunk_ce, head, h[a:a + chunk_size], t[a:a + chunk_size], w[a:a + chunk_size],
                                   use_reentrant=False)
    return total


def weighted_ce_sum(hidden: torch.Tensor, head_weight: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                    chunk_size: int = 4096, fused: bool = True, compiled: bool = False) -> torch.Tensor:
    """``sum_t w_t * CE(hidden_t @ head_weight^T, target_t)`` over positions with ``w_t > 0``.

    Args:
        hidden: ``[B, T, D]`` final normed hidden states.
        head_weight: ``[V, D]`` the LM head matrix (no bias).
        targets: ``[B, T]`` target ids.
        weights: ``[B, T]`` float32 weights.
        chunk_size: positions per LM-head chunk (0: all at once).
        fused: use :func:`~aromni.training.fused_ce.fused_linear_ce`; ``False`` runs the plain autograd path
            (``F.cross_entropy`` on float32 logits, chunks recomputed in backward).
        compiled: the fused path's chunks through ``torch.compile``.

    Returns:
        A scalar (float32).
    """
    w = weights.reshape(-1)
    keep = w > 0
    h = hidden.reshape(-1, hidden.shape[-1])
    t = targets.reshape(-1)
    if not bool(keep.all()):
        idx = keep.nonzero().squeeze(1)
        h, t, w = h[idx], t[idx], w[idx]
    if fused:
        return fused_linear_ce(h, head_weight, t, w, chunk_size, compiled=compiled)
    return reference_ce_sum(h, lambda x: F.linear(x, head_weight).float(), t, w, chunk_size)


@dataclass
class StepTotals:
    """Normalisers of one optimizer step (global over micro-batches and ranks).

    Attributes:
        ntp: denominator of the NTP term (sum of weights, or number of counted targets).
        perc: number of perceptual positions.
        scale: multiplies each micro-batch loss before backward (the world size under data parallelism, whose
            gradient averaging would otherwise divide the global sum by it).
    """

    ntp: float
    perc: float
    scale: float = 1.0


class TrainingObjective(nn.Module):
    """The decoder, the perceptual head and the loss, as one module (what DDP/FSDP wrap).

    Args:
        decoder: the model.
        perceptual: ``W_h`` + ``E``, or ``None`` when the perceptual loss is off.
        perc_weight: lambda_perc.
        chunk_size: LM-head chunk (see :func:`weighted_ce_sum`).
        fused: fused LM head + cross-entropy (see :mod:`aromni.training.fused_ce`).
        compiled: the fused loss's chunks through ``torch.compile`` (with ``model.compile``).
    """

    def __init__(self, decoder: Decoder, perceptual: PerceptualHead | None = None, perc_weight: float = 1.0,
                 chunk_size: int = 4096, fused: bool = True, compiled: bool = False):
        super().__init__()
        self.decoder = decoder
        self.perceptual = perceptual
        self.perc_weight = perc_weight
        self.chunk_size = chunk_size
        self.fused = fused
        self.compiled = compiled

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, perc_codes: torch.Tensor,
                segment_ids: torch.Tensor | None, totals: StepTotals) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(loss_to_backward, ntp_sum, perc_sum)``; the sums are detached (for logging)."""
        hidden = self.decoder(tokens, segment_ids=segment_ids, return_hidden=True)  # (B, T, D)
        ntp_sum = weighted_ce_sum(hidden, self.decoder.lm_head.weight, targets, weights, self.chunk_size, self.fused,
                                  self.compiled)
        loss = ntp_sum / max(totals.ntp, 1e-12)
        perc_sum = ntp_sum.new_zeros(())
        if self.perceptual is not None:
            # Always run the head, even on zero positions, so every rank uses W_h in every step (DDP requires it).
            sel = (perc_codes >= 0).reshape(-1).nonzero().squeeze(1)
            err = self.perceptual(hidden.reshape(-1, hidden.shape[-1])[sel], perc_codes.reshape(-1)[sel])
            perc_sum = err.sum()
            loss = loss + self.perc_weight * perc_sum / max(totals.perc, 1.0)
        return loss * totals.scale, ntp_sum.detach(), perc_sum.detach()
