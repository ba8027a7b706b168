"""Single-codebook vector quantiser with EMA updates, k-means initialisation and dead-code restarts.

Codes are nearest neighbours (squared L2) in a ``dim``-dimensional codebook. In training the codebook follows an
exponential moving average of the vectors assigned to each code (no codebook gradient); the encoder gets the
straight-through gradient plus a commitment loss. A code that no vector has chosen for ``dead_code_steps``
updates is moved onto a random vector of the current batch, which is what keeps usage from collapsing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # [B, T, D] straight-through (value of the codes, gradient of the input)
    codes: torch.Tensor  # [B, T] int64
    commit_loss: torch.Tensor  # scalar: mean squared distance input <-> code vector
    perplexity: float  # exp(entropy) of this batch's code histogram
    restarted: int  # codes restarted by this update


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k-means++ seeding then Lloyd iterations on ``x [N, D]`` -> centroids ``[k, D]``.

    Empty clusters are re-seeded from random points. With fewer points than ``k`` every point is used (cycled)
    and jittered so the centroids differ; no iterations are run then (the problem is degenerate).
    """
    n = x.shape[0]
    if n < k:
        noise = torch.randn(k, x.shape[1], generator=generator).to(x) * (x.std() * 1e-2 + 1e-6)
        return x[torch.arange(k) % n] + noise
    centroids = _kmeans_pp(x, k, generator)
    for _ in range(iters):
        assign = _nearest(x, centroids)  # [N]
        counts = torch.bincount(assign, minlength=k).to(x.dtype)  # [k]
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
        n_empty = int(empty.sum())
        if n_empty:
            centroids[empty] = x[torch.randint(n, (n_empty,), generator=generator)]
    return centroids


def _kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """k-means++ seeding: each new centroid is drawn with probability proportional to its squared distance."""
    first = int(torch.randint(x.shape[0], (1,), generator=generator))
    chosen = [first]
    d2 = (x - x[first]).pow(2).sum(1)  # [N] squared distance to the nearest chosen centroid
    for _ in range(1, k):
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.ones_like(d2) / d2.numel()
        i = int(torch.multinomial(probs.cpu(), 1, generator=generator))
        chosen.append(i)
        d2 = torch.minimum(d2, (x - x[i]).pow(2).sum(1))
    return x[chosen].clone()


def _nearest(x: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """Index of the nearest row of ``embed [K, D]`` for each row of ``x [N, D]``."""
    dist = x.pow(2).sum(1, keepdim=True) - 2 * x @ embed.t() + embed.pow(2).sum(1)[None, :]
    return dist.argmin(dim=1)


class EMAVectorQuantizer(nn.Module):
    """``x [B, T, D] -> codes [B, T]``; codebook ``embed [K, D]`` trained by EMA.

    Args:
        codebook_size: K.
        dim: D.
        decay: EMA decay of cluster sizes and sums.
        dead_code_steps: restart a code when no vector chose it in this many training updates (0: never).
    """

    def __init__(self, codebook_size: int, dim: int, *, decay: float = 0.99, eps: float = 1e-5,
                 dead_code_steps: int = 20):
        super().__init__()
        self.codebook_size, self.dim = codebook_size, dim
        self.decay, self.eps, self.dead_code_steps = decay, eps, dead_code_steps
        self.register_buffer("embed", torch.randn(codebook_size, dim) * 0.1)
        self.register_buffer("embed_avg", self.embed.clone())
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        # Update index at which each code was last chosen (-1: never) / last chosen or restarted (restart timer).
        self.register_buffer("last_chosen", torch.full((codebook_size,), -1, dtype=torch.long))
        self.register_buffer("last_used", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("inited", torch.zeros((), dtype=torch.bool))

    # --- inference ---------------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., D] -> codes [...]`` (int64)."""
        flat = x.reshape(-1, self.dim).float()
        return _nearest(flat, self.embed).reshape(x.shape[:-1])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [...] -> vectors [..., D]``."""
        return F.embedding(codes, self.embed)

    # --- training ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def init_codebook(self, vectors: torch.Tensor, iters: int = 20, generator: torch.Generator | None = None) -> None:
        """k-means over ``vectors [N, D]`` (e.g. the encoder's outputs on the first batches) sets the codebook."""
        c = kmeans(vectors.reshape(-1, self.dim).float(), self.codebook_size, iters, generator)
        self.embed.copy_(c)
        self.cluster_size.fill_(max(1.0, vectors.shape[0] / self.codebook_size))
        self.embed_avg.copy_(c * self.cluster_size[:, None])
        self.last_used.fill_(int(self.updates))
        self.inited.fill_(True)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """``x [B, T, D]``; updates the codebook when ``self.training``."""
        flat = x.reshape(-1, self.dim)
        if self.training and not bool(self.inited):
            self.init_codebook(flat.detach())
        codes = _nearest(flat.detach().float(), self.embed)  # [N]
        counts = torch.bincount(codes, minlength=self.codebook_size)
        restarted = 0
        if self.training:
            restarted = self._ema_update(flat.detach().float(), codes, counts)
        q = F.embedding(codes, self.embed).reshape(x.shape).to(x.dtype)
        commit = F.mse_loss(x, q.detach())
        p = counts.float() / max(1, codes.numel())
        perplexity = math.exp(float(-(p * torch.log(p.clamp(min=1e-12))).sum()))
        return QuantizerOutput(x + (q - x).detach(), codes.reshape(x.shape[:-1]), commit, perplexity, restarted)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor) -> int:
        self.updates += 1
        self.last_used[counts > 0] = self.updates
        self.last_chosen[counts > 0] = self.updates
        sums = torch.zeros_like(self.embed).index_add_(0, codes, flat)
        self.cluster_size.mul_(self.decay).add_(counts.float(), alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        return self._restart_dead(flat)

    def _restart_dead(self, flat: torch.Tensor) -> int:
        if self.dead_code_steps <= 0:
            return 0
        dead = (self.updates - self.last_used) >= self.dead_code_steps
        n_dead = int(dead.sum())
        if not n_dead:
            return 0
        picks = flat[torch.randint(flat.shape[0], (n_dead,), device=flat.device)]
        size = float(self.cluster_size.mean())  # a restarted code starts as an average one, not a fragile one
        self.embed[dead] = picks
        self.embed_avg[dead] = picks * size
        self.cluster_size[dead] = size
        self.last_used[dead] = self.updates
        return n_dead

    def usage(self, window: int | None = None) -> float:
        """Fraction of codes chosen at least once in the last ``window`` updates (restarts do not count)."""
        window = window or max(1, self.dead_code_steps)
        chosen = (self.last_chosen >= 0) & ((self.updates - self.last_chosen) < window)
        return float(chosen.float().mean())
