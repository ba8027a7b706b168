"""Codebook upkeep during training: data initialisation, EMA updates and dead-code restarts.

The codebook itself stays ``quantize.embedding.weight`` (the checkpoint format does not change); the EMA
statistics and the usage counter live here and are saved in the training checkpoint.
"""

from __future__ import annotations

import torch

from aromni.tokenizers.image.quantizer import VectorQuantizer


def sample_rows(z: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` rows of ``z [N, D]``: without replacement when possible, else with replacement plus tiny noise."""
    if z.shape[0] >= n:
        return z[torch.randperm(z.shape[0], generator=gen)[:n]].clone()
    idx = torch.randint(0, z.shape[0], (n,), generator=gen)
    noise = torch.randn(n, z.shape[1], generator=gen) * (z.std() * 0.01 + 1e-6)
    return z[idx] + noise


class CodebookKeeper:
    """Tracks code usage; in ``ema`` mode also owns the moving averages that define the codebook.

    ``cluster_size [K]`` and ``embed_sum [K, D]`` follow the batch assignments with decay ``decay``; the
    codebook is ``embed_sum / cluster_size`` (Laplace-smoothed). ``usage [K]`` counts assignments since the
    last restart.
    """

    def __init__(self, quantizer: VectorQuantizer, *, ema: bool, decay: float, eps: float = 1e-5):
        self.q, self.ema, self.decay, self.eps = quantizer, ema, decay, eps
        k = quantizer.n_embed
        self.cluster_size = torch.ones(k)
        self.embed_sum = quantizer.embedding.weight.detach().clone()
        self.usage = torch.zeros(k)

    @torch.no_grad()
    def init_from_data(self, z: torch.Tensor, gen: torch.Generator) -> None:
        """Seed every codebook row with an encoder output ``z [N, D]`` (avoids starting with dead codes)."""
        rows = sample_rows(z.detach().float().cpu(), self.q.n_embed, gen)
        self.q.embedding.weight.copy_(rows)
        self.cluster_size.fill_(1.0)
        self.embed_sum.copy_(rows)

    @torch.no_grad()
    def observe(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Count the batch's assignments (``z [N, D]``, ``codes [N]``); EMA-update the codebook. Returns counts."""
        codes = codes.reshape(-1).cpu()
        counts = torch.bincount(codes, minlength=self.q.n_embed).float()
        self.usage += counts
        if self.ema:
            sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, z.detach().float().cpu())
            self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (n + self.q.n_embed * self.eps) * n
            self.q.embedding.weight.copy_(self.embed_sum / smoothed[:, None])
        return counts

    @torch.no_grad()
    def restart_dead(self, z: torch.Tensor, threshold: float, gen: torch.Generator,
                     optimizer: torch.optim.Optimizer | None = None) -> int:
        """Re-seed codes used fewer than ``threshold`` times since the last call from ``z [N, D]``; reset usage.

        In straight-through mode the optimizer's moment estimates of the re-seeded rows are zeroed too, so stale
        momentum does not drag the fresh vectors away. Returns how many codes were restarted.
        """
        dead = torch.nonzero(self.usage < threshold).flatten()
        self.usage.zero_()
        if dead.numel() == 0:
            return 0
        rows = sample_rows(z.detach().float().cpu(), dead.numel(), gen)
        w = self.q.embedding.weight
        w[dead.to(w.device)] = rows.to(w)
        self.cluster_size[dead] = 1.0
        self.embed_sum[dead] = rows
        state = optimizer.state.get(w) if optimizer is not None else None
        for key in ("exp_avg", "exp_avg_sq"):
            if state and key in state:
                state[key][dead.to(w.device)] = 0.0
        return int(dead.numel())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"cluster_size": self.cluster_size, "embed_sum": self.embed_sum, "usage": self.usage}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k in ("cluster_size", "embed_sum", "usage"):
            getattr(self, k).copy_(state[k])
