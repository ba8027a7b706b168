"""Vocabulary extension: give an existing decoder the ids of a larger layout (new speech codes, special tokens).

The new layout must keep every id of the old one where it was (same special ids, same code->id maps, text ranges
kept) and may add ids, also past the old ``vocab_size``. The embedding and LM head grow to the new size; old
rows are copied unchanged, so for inputs made of old ids the logits of old ids are bit-identical. New rows are:

* ``init="mean"`` (default): the mean of the old rows plus ``noise_std`` x (per-dimension std of the old rows)
  x N(0, 1). A new token starts as an "average" token: its logit is close to the mean logit, its embedding
  in-distribution (the usual practice, e.g. the mean-resizing of Hugging Face ``resize_token_embeddings``);
* ``init="normal"``: N(0, ``noise_std``), the from-scratch initialisation.

"Old rows" are the rows of ids the old layout assigns (special, reserved, text, image, speech), so unused padding
rows of the old matrix do not bias the mean. Rows that exist in the old matrix but were unassigned and are now
assigned are re-initialised the same way.
"""

from __future__ import annotations

import numpy as np
import torch

from aromni.errors import ConfigError
from aromni.models.decoder import Decoder
from aromni.vocab.layout import VocabLayout


def check_extension(old: VocabLayout, new: VocabLayout) -> None:
    """Raise :class:`ConfigError` unless ``new`` keeps every id of ``old`` in place."""
    for role, i in old.special.items():
        if new.special.get(role) != i:
            raise ConfigError(f"layout extension moves <{role}> from id {i} to {new.special.get(role)}",
                              "the new layout must keep every old id where it was")
    for role, i in old.reserved.items():
        if role in new.reserved and new.reserved[role] != i:
            raise ConfigError(f"layout extension moves reserved <{role}> from id {i} to {new.reserved[role]}")
    for m in ("image", "speech"):
        a, b = getattr(old, m).code_to_id, getattr(new, m).code_to_id
        if b.size < a.size or not np.array_equal(b[:a.size], a):
            raise ConfigError(f"layout extension changes the {m} code -> id map",
                              "append new codes after the old ones and keep old ids")
    if old.text_runs is not None:
        new_text = new.mask("text").numpy()
        for a, b in old.text_runs:
            if not new_text[a:b].all():
                raise ConfigError(f"layout extension drops text ids in [{a}, {b})")
    if new.vocab_size < old.vocab_size:
        raise ConfigError(f"layout extension shrinks the vocabulary ({old.vocab_size} -> {new.vocab_size})")


def assigned_ids(layout: VocabLayout) -> np.ndarray:
    """Ids the layout gives a meaning to (not the padding rows)."""
    kinds = layout.kind_of(np.arange(layout.vocab_size))
    used = kinds > 0
    used[list(layout.reserved.values())] = True
    return np.nonzero(used)[0]


def _grow(weight: torch.Tensor, new_rows: int, fresh: np.ndarray, basis: np.ndarray, init: str, noise_std: float,
          generator: torch.Generator | None) -> torch.Tensor:
    out = weight.new_zeros(new_rows, weight.shape[1])
    out[:weight.shape[0]] = weight
    if fresh.size == 0:
        return out
    ref = weight[torch.from_numpy(basis)].float()
    noise = torch.randn(fresh.size, weight.shape[1], generator=generator, dtype=torch.float32)
    if init == "mean":
        rows = ref.mean(0, keepdim=True) + noise_std * ref.std(0, keepdim=True) * noise
    elif init == "normal":
        rows = noise_std * noise
    else:
        raise ConfigError(f"unknown vocabulary-extension init {init!r}", "mean or normal")
    out[torch.from_numpy(fresh)] = rows.to(out.dtype)
    return out


@torch.no_grad()
def extend_vocabulary(decoder: Decoder, old: VocabLayout, new: VocabLayout, *, init: str = "mean",
                      noise_std: float = 0.02, generator: torch.Generator | None = None) -> Decoder:
    """Resize ``decoder`` (in place) from layout ``old`` to ``new`` and return it.

    Raises:
        ConfigError: ``new`` does not keep ``old``'s ids, or ``decoder`` does not match ``old``.
    """
    if decoder.cfg.vocab_size != old.vocab_size:
        raise ConfigError(f"decoder has {decoder.cfg.vocab_size} rows but its layout {old.vocab_size}")
    check_extension(old, new)
    basis = assigned_ids(old)
    fresh = np.setdiff1d(assigned_ids(new), basis)
    V = new.vocab_size
    if V == old.vocab_size and fresh.size == 0:
        return decoder
    emb = _grow(decoder.embed.weight.data, V, fresh, basis, init, noise_std, generator)
    decoder.embed = torch.nn.Embedding(V, emb.shape[1], device=emb.device, dtype=emb.dtype, _weight=emb)
    if decoder.cfg.tie_embeddings:
        decoder.lm_head = torch.nn.Linear(emb.shape[1], V, bias=False, device=emb.device, dtype=emb.dtype)
        decoder.lm_head.weight = decoder.embed.weight
    else:
        head = _grow(decoder.lm_head.weight.data, V, fresh, basis, init, noise_std, generator)
        decoder.lm_head = torch.nn.Linear(head.shape[1], V, bias=False, device=head.device, dtype=head.dtype)
        decoder.lm_head.weight = torch.nn.Parameter(head)
    decoder.cfg = decoder.cfg.replace(vocab_size=V)
    return decoder
