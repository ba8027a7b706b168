"""Fused LM head + weighted cross-entropy: ``sum_i w_i * CE(h_i W^T, t_i)`` without materialising all logits.

Autograd's path (``F.cross_entropy(lm_head(h))``) keeps ``[N, V]`` float32 logits plus their log-softmax alive
until backward, then allocates a zero-filled ``[N, V]`` gradient and a second one for the softmax backward. Here
the forward pass walks ``chunk`` positions at a time and, for each chunk, computes the logits, the loss and right
away the gradient ``w * (softmax - onehot)`` in place, folding it into ``dL/dh`` and ``dL/dW`` with two matmuls;
backward only scales those by the incoming gradient. At most one ``[chunk, V]`` block exists at a time and every
element of it is touched a fixed, small number of times.

Under autocast the matmuls run in the autocast dtype (as ``nn.Linear`` would); the softmax and the loss are
float32. The result equals the autograd path up to float rounding (tests compare both, values and gradients).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch


def _mm_dtype(h: torch.Tensor) -> torch.dtype:
    dev = h.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return h.dtype


def _chunk_loss_grad(hc: torch.Tensor, Wm: torch.Tensor, tc: torch.Tensor, wc: torch.Tensor, need_grad: bool
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One chunk: ``hc [n, D]`` (in the matmul dtype), ``Wm [V, D]``, ``tc, wc [n]`` -> the chunk's weighted loss
    sum (float32) and, if ``need_grad``, ``dL/dlogits = w * (softmax - onehot)`` ``[n, V]`` in the matmul dtype."""
    logits = (hc @ Wm.t()).float()  # (n, V)
    lse = torch.logsumexp(logits, dim=-1)
    loss = ((lse - logits.gather(1, tc[:, None]).squeeze(1)) * wc).sum()
    if not need_grad:
        return loss, None
    # Computed in place on the logits block (compiled, the passes over it fuse).
    g = logits.sub_(lse[:, None]).exp_()
    g.scatter_add_(1, tc[:, None], torch.full_like(lse[:, None], -1.0))
    g.mul_(wc[:, None])
    return loss, g.to(hc.dtype)


@functools.cache
def _compiled_chunk() -> Callable[..., tuple[torch.Tensor, torch.Tensor | None]]:
    """``torch.compile(_chunk_loss_grad)``, built on first use; dynamic, because the number of counted positions
    changes from batch to batch."""
    return torch.compile(_chunk_loss_grad, dynamic=True)


class _FusedLinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, w: torch.Tensor, chunk: int,
                mm_dtype: torch.dtype, need_h: bool, need_w: bool, compiled: bool) -> torch.Tensor:
        N = h.shape[0]
        Wm = weight.to(mm_dtype)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        step = _compiled_chunk() if compiled else _chunk_loss_grad
        for a in range(0, N, chunk):
            hc, tc, wc = h[a:a + chunk].to(mm_dtype), targets[a:a + chunk], w[a:a + chunk]
            loss, gm = step(hc, Wm, tc, wc, need_h or need_w)
            total += loss
            if gm is None:
                continue
            if need_h:
                grad_h[a:a + chunk] = (gm @ Wm).to(h.dtype)
            if need_w and mm_dtype == torch.float32:
                grad_w.addmm_(gm.t(), hc)
            elif need_w:
                grad_w += (gm.t() @ hc).float()
        ctx.grad_h, ctx.grad_w, ctx.w_dtype = grad_h, grad_w, weight.dtype
        return total

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        gh = ctx.grad_h * g.to(ctx.grad_h.dtype) if ctx.grad_h is not None else None
        gw = (ctx.grad_w * g).to(ctx.w_dtype) if ctx.grad_w is not None else None
        ctx.grad_h = ctx.grad_w = None
        return gh, gw, None, None, None, None, None, None, None


def fused_linear_ce(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, w: torch.Tensor,
                    chunk: int = 4096, compiled: bool = False) -> torch.Tensor:
    """``sum_i w_i * CE(h_i @ weight^T, targets_i)`` for ``h [N, D]``, ``weight [V, D]``, ``targets, w [N]``.

    The gradients for ``h`` and ``weight`` are computed during the forward pass (only when grad mode is on and
    they require it) and returned by backward; the scalar result is float32. ``compiled``: each chunk's logits,
    loss and gradient block go through ``torch.compile`` (the training config's ``model.compile``).
    """
    grad_on = torch.is_grad_enabled()
    need_h, need_w = grad_on and h.requires_grad, grad_on and weight.requires_grad
    chunk = chunk if chunk > 0 else max(h.shape[0], 1)
    return _FusedLinearCE.apply(h, weight, targets, w.float(), chunk, _mm_dtype(h), need_h, need_w, compiled)
