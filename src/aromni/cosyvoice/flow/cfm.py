"""Conditional flow matching as CosyVoice2 does it (``cosyvoice/flow/flow_matching.py CausalConditionalCFM``).

Training (:meth:`CausalConditionalCFM.compute_loss`): ``t ~ U(0, 1)``, ``z ~ N(0, I)``,
``y = (1 - (1 - sigma) t) z + t x1``, target velocity ``u = x1 - (1 - sigma) z``; with probability
``training_cfg_rate`` per sample, ``mu``, ``spks`` and ``cond`` are zeroed (classifier-free guidance dropout); the
loss is ``sum((pred - u)^2 * mask) / (sum(mask) * 80)``.

Sampling (:meth:`CausalConditionalCFM.sample`): Euler steps on ``t = 1 - cos(linspace(0, 1, n + 1) * pi / 2)``,
starting from a fixed noise tensor (``torch.manual_seed(0); randn(1, 80, 15000)``, frame ``k`` always gets column
``k``) or a caller's noise; each step runs the conditional rows and the unconditioned rows (mu, spks, cond zeroed;
same mask) as one batch and combines ``v = (1 + r) v_cond - r v_uncond`` (CosyVoice2: ``r = 0.7``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aromni.cosyvoice.flow.config import CFMConfig
from aromni.cosyvoice.flow.estimator import CausalConditionalDecoder
from aromni.errors import InputError

__all__ = ["CausalConditionalCFM", "cosine_t_span"]


def cosine_t_span(n_timesteps: int, device: torch.device | None = None) -> torch.Tensor:
    """``[n + 1]``: ``1 - cos(linspace(0, 1, n + 1) * pi / 2)``."""
    return 1 - torch.cos(torch.linspace(0, 1, n_timesteps + 1, device=device) * 0.5 * math.pi)


class CausalConditionalCFM(nn.Module):
    """The ``decoder`` of the flow model: holds the ``estimator`` (its only parameters) and the fixed noise."""

    def __init__(self, cfg: CFMConfig, estimator: CausalConditionalDecoder):
        super().__init__()
        self.cfg = cfg
        self.estimator = estimator
        gen = torch.Generator().manual_seed(cfg.noise_seed)
        noise = torch.randn(1, estimator.cfg.out_channels, cfg.noise_frames, generator=gen)
        self.register_buffer("rand_noise", noise, persistent=False)

    def compute_loss(self, x1: torch.Tensor, mask: torch.Tensor, mu: torch.Tensor, spks: torch.Tensor,
                     cond: torch.Tensor, *, streaming: bool = False,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """``x1, mu, cond [B, 80, T]`` (target mel, encoder output, prompt frames), ``mask [B, 1, T]`` (float),
        ``spks [B, 80]`` -> scalar loss. Randomness (t, z, CFG dropout) comes from ``generator``."""
        b = x1.shape[0]
        dev = x1.device
        t = torch.rand(b, 1, 1, generator=generator, device=dev).to(x1.dtype)
        z = torch.randn(x1.shape, generator=generator, device=dev).to(x1.dtype)
        sigma = self.cfg.sigma_min
        y = (1 - (1 - sigma) * t) * z + t * x1
        u = x1 - (1 - sigma) * z
        if self.cfg.training_cfg_rate > 0:
            keep = (torch.rand(b, generator=generator, device=dev) > self.cfg.training_cfg_rate).to(x1.dtype)
            mu, spks, cond = mu * keep[:, None, None], spks * keep[:, None], cond * keep[:, None, None]
        pred = self.estimator(y, mask, mu, t.view(b), spks, cond, streaming=streaming)
        return F.mse_loss(pred * mask, u * mask, reduction="sum") / (mask.sum() * u.shape[1])

    def initial_noise(self, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
        """The fixed noise for ``shape = [B, 80, T]``: columns ``0..T-1`` of ``rand_noise`` for every row."""
        if shape[-1] > self.rand_noise.shape[-1]:
            raise InputError(f"{shape[-1]} mel frames exceed the fixed noise's {self.rand_noise.shape[-1]} "
                             f"({self.rand_noise.shape[-1] / 50:.0f} s)", "synthesise shorter pieces or pass noise=")
        return self.rand_noise[:, :, : shape[-1]].to(like.device, like.dtype).expand(shape[0], -1, -1).clone()

    @torch.no_grad()
    def sample(self, mu: torch.Tensor, mask: torch.Tensor, spks: torch.Tensor, cond: torch.Tensor, *,
               n_timesteps: int = 10, cfg_rate: float | None = None, noise: torch.Tensor | None = None,
               streaming: bool = False) -> torch.Tensor:
        """Euler ODE solve with classifier-free guidance: ``mu, cond [B, 80, T]``, ``mask [B, 1, T]``,
        ``spks [B, 80]`` -> mel ``[B, 80, T]`` (float32). ``noise [B or 1, 80, >= T]``: the starting point
        instead of the fixed noise; ``cfg_rate`` None: the config's ``inference_cfg_rate``."""
        rate = self.cfg.inference_cfg_rate if cfg_rate is None else float(cfg_rate)
        if noise is None:
            x = self.initial_noise(mu.shape, mu)
        else:
            x = noise[..., : mu.shape[-1]].to(mu).expand_as(mu).clone()
        t_span = cosine_t_span(n_timesteps, mu.device).to(mu.dtype)
        b = mu.shape[0]
        mask2 = torch.cat([mask, mask])
        mu2 = torch.cat([mu, torch.zeros_like(mu)])
        spks2 = torch.cat([spks, torch.zeros_like(spks)])
        cond2 = torch.cat([cond, torch.zeros_like(cond)])
        t, dt = t_span[0], t_span[1] - t_span[0]
        for step in range(1, len(t_span)):
            v = self.estimator(torch.cat([x, x]), mask2, mu2, t.expand(2 * b), spks2, cond2, streaming=streaming)
            v_cond, v_uncond = v[:b], v[b:]
            x = x + dt * ((1.0 + rate) * v_cond - rate * v_uncond)
            t = t + dt
            if step < len(t_span) - 1:
                dt = t_span[step + 1] - t
        return x.float()
