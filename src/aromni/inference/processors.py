"""Composable logits processors on ``[B, V]`` float logits.

Each processor is a callable ``(logits, ctx) -> logits``; :class:`ProcessorChain` runs them in order. The
official text pipeline is ``AllowOnly -> RepetitionPenalty -> Temperature -> TopP`` (``official-formats.md``
§C.3); we add an optional ``TopK`` before ``TopP`` (off by default).

Parameters may be a Python number (same for every row), a tensor ``[B]`` (one value per row) or
:class:`PerState` (one value per modality state, looked up with ``ctx.state``), so one chain serves a batch whose
rows are in different states (text, image, speech) without any Python work per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class StepContext:
    """What processors may read at one decoding step.

    Attributes:
        state: ``[B]`` long, the modality state of every row (indexes :class:`PerState` tables).
        allowed: ``[B, V]`` bool, the tokens the grammar allows now (``None``: everything).
        presence: ``[B, V]`` bool, tokens present in each row's context (for the repetition penalty).
    """

    state: torch.Tensor | None = None
    allowed: torch.Tensor | None = None
    presence: torch.Tensor | None = None


@dataclass(frozen=True)
class PerState:
    """A parameter with one value per modality state: ``values[state]``."""

    values: torch.Tensor

    @classmethod
    def of(cls, values: Sequence[float], device: torch.device | str | None = None,
           dtype: torch.dtype = torch.float32) -> PerState:
        return cls(torch.tensor(list(values), dtype=dtype, device=device))


Param = float | int | torch.Tensor | PerState


def resolve(param: Param, ctx: StepContext, batch: int, device: torch.device) -> torch.Tensor | float:
    """A parameter as a number or a ``[B]`` tensor for the current step."""
    if isinstance(param, PerState):
        if ctx.state is None:
            raise ValueError("a PerState parameter needs ctx.state")
        return param.values.to(device)[ctx.state]
    if isinstance(param, torch.Tensor):
        return param.to(device).expand(batch)
    return param


def _col(x: torch.Tensor | float) -> torch.Tensor | float:
    return x[:, None] if isinstance(x, torch.Tensor) else x


def _all_equal(param: Param, value: float) -> bool:
    if isinstance(param, PerState):
        return bool((param.values == value).all())
    if isinstance(param, torch.Tensor):
        return bool((param == value).all())
    return param == value


class LogitsProcessor(Protocol):
    def __call__(self, logits: torch.Tensor, ctx: StepContext) -> torch.Tensor: ...


# ------------------------------------------------------------------------------------------------ functions
def allow_only(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Set logits of disallowed tokens (``allowed [B, V]`` or ``[V]`` False) to -inf."""
    return logits.masked_fill(~allowed, float("-inf"))


def repetition_penalty(logits: torch.Tensor, presence: torch.Tensor, penalty: torch.Tensor | float) -> torch.Tensor:
    """Hugging Face's penalty over the context: for tokens present, positive logits / p, negative * p."""
    p = _col(penalty)
    penalised = torch.where(logits < 0, logits * p, logits / p)
    return torch.where(presence, penalised, logits)


def temperature(logits: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    return logits / _col(t)


def top_k(logits: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """Keep the ``k`` largest logits per row (``k = 0``: keep all)."""
    V = logits.shape[-1]
    k_t = torch.as_tensor(k, device=logits.device).expand(logits.shape[0]).long()
    k_t = torch.where(k_t > 0, k_t, V).clamp(max=V)
    kth = logits.sort(dim=-1, descending=True).values.gather(1, (k_t - 1)[:, None])
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p(logits: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """Nucleus filtering exactly as Hugging Face's ``TopPLogitsWarper`` (min_tokens_to_keep = 1)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove = cum <= 1 - _col(p)
    remove[..., -1] = False
    mask = remove.scatter(1, order, remove)
    return logits.masked_fill(mask, float("-inf"))


# ----------------------------------------------------------------------------------------------- processors
class AllowOnly:
    """Mask everything outside ``mask`` (``[V]``), or, with ``mask=None``, outside ``ctx.allowed``."""

    def __init__(self, mask: torch.Tensor | None = None):
        self.mask = mask

    def __call__(self, logits: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        mask = self.mask if self.mask is not None else ctx.allowed
        return logits if mask is None else allow_only(logits, mask.to(logits.device))


class RepetitionPenalty:
    def __init__(self, penalty: Param):
        self.penalty = penalty

    def is_noop(self) -> bool:
        return _all_equal(self.penalty, 1.0)

    def __call__(self, logits: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        if ctx.presence is None:
            return logits
        return repetition_penalty(logits, ctx.presence, resolve(self.penalty, ctx, logits.shape[0], logits.device))


class Temperature:
    def __init__(self, t: Param):
        self.t = t

    def is_noop(self) -> bool:
        return _all_equal(self.t, 1.0)

    def __call__(self, logits: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        return temperature(logits, resolve(self.t, ctx, logits.shape[0], logits.device))


class TopK:
    def __init__(self, k: Param):
        self.k = k

    def is_noop(self) -> bool:
        return _all_equal(self.k, 0)

    def __call__(self, logits: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        return top_k(logits, resolve(self.k, ctx, logits.shape[0], logits.device))


class TopP:
    def __init__(self, p: Param):
        self.p = p

    def is_noop(self) -> bool:
        return _all_equal(self.p, 1.0)

    def __call__(self, logits: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        return top_p(logits, resolve(self.p, ctx, logits.shape[0], logits.device))


class ProcessorChain:
    """Run processors in order, skipping those that are no-ops for every row and state."""

    def __init__(self, processors: Iterable[LogitsProcessor]):
        self.processors = [p for p in processors if not (hasattr(p, "is_noop") and p.is_noop())]

    def __call__(self, logits: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        for p in self.processors:
            logits = p(logits, ctx)
        return logits
