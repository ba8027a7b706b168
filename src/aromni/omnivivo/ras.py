"""CosyVoice2's repetition-aware sampling (RAS, after VALL-E 2) for speech codes, vectorised over rows
(omnivivo.md §3.2; CosyVoice ``cosyvoice/utils/common.py`` ``ras_sampling`` / ``nucleus_sampling``).

Exact semantics, per row, on ``p = softmax(logits)`` (float32):

1. **Nucleus draw.** Sort ``p`` descending (stable: ties keep the lower id first). Walking the sorted list, a
   token is kept while the cumulative probability of the tokens BEFORE it is ``< top_p`` and fewer than ``top_k``
   tokens are kept; so the kept set is the shortest prefix whose mass reaches ``top_p`` (the crossing token
   included), cut at ``top_k``. One id is drawn in proportion to the kept probabilities.
2. **Repetition check.** ``rep`` = how often that id occurs among the row's last ``win_size`` decoded codes (all
   of them if fewer). If ``rep >= win_size * tau_r`` (with the defaults 10 * 0.1 = 1: any occurrence), the id
   is re-drawn from the FULL softmax, with the repeated id excluded when ``exclude_repeated`` (CosyVoice at the
   pinned HEAD sets its score to -inf first; its first releases re-drew from the full softmax unchanged: use
   ``exclude_repeated=False``). If nothing else has mass, the first draw stands (CosyVoice would fail on an
   all -inf row).

Draws use the exponential race ``argmax(p / E)``, ``E ~ Exp(1)``: the same distribution as CosyVoice's
``multinomial``, a different random stream, no host synchronisation. Every row draws two noise vectors of the
vocabulary's size per step from ITS OWN generator (whether or not it re-draws), so a row's codes depend only on
its seed, never on its batch mates or on how many rows are still running. ``greedy`` takes the argmax and draws
nothing. EOS masking before ``min_len`` is :func:`mask_eos`, applied to the logits before sampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aromni.errors import ConfigError
from aromni.inference.sampling import exponential_noise


@dataclass(frozen=True)
class SpeechSampling:
    """RAS settings (CosyVoice2's yaml: top_p 0.8, top_k 25, win_size 10, tau_r 0.1).

    Attributes:
        top_p: nucleus mass in (0, 1].
        top_k: most tokens in the nucleus (>= 1).
        win_size: decoded codes the repetition check looks back on (>= 1).
        tau_r: repetition threshold as a fraction of ``win_size``, in (0, 1].
        exclude_repeated: the re-draw leaves the repeated id out (module docstring).
        greedy: argmax instead of RAS (for checks; draws no noise).
    """

    top_p: float = 0.8
    top_k: int = 25
    win_size: int = 10
    tau_r: float = 0.1
    exclude_repeated: bool = True
    greedy: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"speech sampling: top_p must be in (0, 1], got {self.top_p!r}")
        for name in ("top_k", "win_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"speech sampling: {name} must be an integer >= 1, got {v!r}")
        t = self.tau_r
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0.0 < t <= 1.0:
            raise ConfigError(f"speech sampling: tau_r must be in (0, 1], got {t!r}",
                              "the re-draw fires at win_size * tau_r repeats")


def mask_eos(logits: torch.Tensor, allow_eos: torch.Tensor, eos: int) -> torch.Tensor:
    """``logits [R, V]`` with the EOS column at -inf in rows where ``allow_eos [R]`` (bool) is False."""
    out = logits.clone()
    out[:, eos] = torch.where(allow_eos, logits[:, eos], torch.full_like(logits[:, eos], float("-inf")))
    return out


def nucleus_keep(probs: torch.Tensor, top_p: float, top_k: int) -> torch.Tensor:
    """The kept set ``[R, V]`` bool (in vocabulary order) of step 1 of the module docstring."""
    values, order = probs.sort(dim=-1, descending=True, stable=True)
    before = F.pad(values.cumsum(dim=-1)[:, :-1], (1, 0))  # mass of the tokens ranked above each one
    rank = torch.arange(probs.shape[-1], device=probs.device)
    keep_sorted = (before < top_p) & (rank < top_k)
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def repeats(history: torch.Tensor, ids: torch.Tensor, win_size: int) -> torch.Tensor:
    """``[R]`` occurrences of ``ids [R]`` among the last ``win_size`` columns of ``history [R, n]``."""
    return (history[:, -win_size:] == ids[:, None]).sum(dim=-1)


def _race(probs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    # Zero-probability ids score -1, below every candidate, even where the noise underflows to 0 (p/0 = nan).
    return torch.where(probs > 0, probs / noise, torch.full_like(probs, -1.0)).argmax(dim=-1)


def ras_sample(logits: torch.Tensor, history: torch.Tensor, sampling: SpeechSampling,
               generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One speech code per row.

    Args:
        logits: ``[R, V]`` float logits (EOS already masked where it is not allowed).
        history: ``[R, n]`` long, each row's decoded codes so far (``n`` may be 0).
        sampling: the RAS settings.
        generators: one per row (unused when ``greedy``).

    Returns:
        ``[R]`` int64 ids.
    """
    if sampling.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float(), dim=-1)
    V, device = probs.shape[-1], probs.device
    first_noise = exponential_noise(generators, V, device)
    second_noise = exponential_noise(generators, V, device)  # drawn every step: the streams never depend on it
    keep = nucleus_keep(probs, sampling.top_p, sampling.top_k)
    first = _race(torch.where(keep, probs, torch.zeros_like(probs)), first_noise)
    redraw = repeats(history, first, sampling.win_size) >= sampling.win_size * sampling.tau_r
    full = probs
    if sampling.exclude_repeated:
        full = probs.scatter(-1, first[:, None], 0.0)
    second = _race(full, second_noise)
    return torch.where(redraw & (full > 0).any(dim=-1), second, first)
