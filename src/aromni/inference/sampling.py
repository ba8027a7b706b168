"""Pure token-selection functions on ``[B, V]`` tensors.

Sampling uses the exponential race: ``argmax(p / E)`` with ``E ~ Exp(1)`` i.i.d. picks index ``i`` with
probability ``p_i`` and needs no host synchronisation (gpt-fast's ``multinomial_sample_one_no_sync``). The noise
comes from one ``torch.Generator`` per row, so a row's samples depend only on its own seed, not on which other
requests share the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def make_generators(seeds: Sequence[int], device: torch.device | str) -> list[torch.Generator]:
    """One seeded generator per row, on ``device``."""
    device = torch.device(device)
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def exponential_noise(generators: Sequence[torch.Generator], vocab_size: int, device: torch.device | str
                      ) -> torch.Tensor:
    """``[B, V]`` i.i.d. Exp(1) noise, row ``b`` drawn from ``generators[b]``."""
    rows = [torch.empty(vocab_size, device=device).exponential_(1.0, generator=g) for g in generators]
    return torch.stack(rows)


def sample_from_probs(probs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Categorical sample per row of ``probs [B, V]`` given Exp(1) ``noise [B, V]`` -> ids ``[B]``."""
    return torch.argmax(probs / noise, dim=-1)


def select_tokens(logits: torch.Tensor, greedy: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """Greedy (argmax) or sampled ids ``[B]`` from processed ``logits [B, V]``.

    Args:
        logits: processed logits (allow-mask, penalties, temperature and top-k/p already applied).
        greedy: ``[B]`` bool, rows that take the argmax (of the processed probabilities, as the official
            selector does).
        noise: Exp(1) noise ``[B, V]``; may be ``None`` only when every row is greedy.
    """
    probs = torch.softmax(logits, dim=-1)
    best = torch.argmax(probs, dim=-1)
    if noise is None:
        return best
    return torch.where(greedy, best, sample_from_probs(probs, noise))
