"""The text front end's one interface, and the one padding rule both implementations follow.

A :class:`TextConditioner` turns captions into the backbone's caption prefix input (omnivivo.md §1.3, §4.1)::

    feats, mask = conditioner.encode(["a red circle on a blue background"])
    # feats [B, L, C] float, mask [B, L] bool, L = conditioner.max_length, C = conditioner.dim

LEFT-padded as LlamaGen samples and trains (``sample_t2i.py``, ``dataset/t2i.py``): each row's valid features
sit in its LAST slots, in token order, the pad slots before them are exactly zero, and the mask is True
exactly on the valid slots. Implementations: :class:`~aromni.omnivivo.t5_conditioner.T5Conditioner`
(frozen Flan-T5, the released models) and :class:`~aromni.omnivivo.toy_conditioner.ToyTextConditioner`
(small, trainable).

The rule, shared so the two cannot drift apart:

* :func:`pad_token_ids`: truncate and right-pad token ids as Hugging Face's T5 tokenizer does with
  ``max_length=L, truncation=True, padding="max_length", add_special_tokens=True``: keep the first ``L - 1``
  tokens, append EOS, pad on the right (so a caption is never empty: it always holds its EOS).
* the encoder runs on the right-padded ids (valid tokens sit at positions 0.. however much padding follows);
* :func:`left_pad` moves the valid rows to the end and zeroes the rest; it is the backbone's own
  :func:`~aromni.omnivivo.t2i_model.left_pad_captions`, so the conditioners and the backbone share one rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from aromni.errors import InputError
from aromni.omnivivo.t2i_model import left_pad_captions
from aromni.tokenizers.text import check_text


@runtime_checkable
class TextConditioner(Protocol):
    """Captions -> left-padded caption features and mask (see the module docstring)."""

    @property
    def dim(self) -> int:
        """Feature width ``C`` (the backbone's ``caption_dim``)."""
        ...

    @property
    def max_length(self) -> int:
        """Caption slots ``L`` (the backbone's ``cls_token_num``)."""
        ...

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``texts`` (B strings) -> ``feats [B, L, C]`` float, pad rows zero, and ``mask [B, L]`` bool, True
        on each row's last ``n_b`` slots. A non-list, an empty list or a non-string raises
        :class:`InputError`."""
        ...


def check_texts(texts: object) -> list[str]:
    """``texts`` as a list of valid strings, or :class:`InputError` naming the problem.

    A bare string is refused rather than read as a list of characters; each item must be a string of valid
    Unicode (:func:`~aromni.tokenizers.text.check_text`). Empty strings are allowed (they encode to EOS
    alone).
    """
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise InputError(f"captions must be a list of strings, got {type(texts).__name__}",
                         'wrap a single caption in a list: ["a red circle"]')
    if len(texts) == 0:
        raise InputError("no captions to encode (empty list)", "pass at least one caption")
    return [check_text(t, f"caption {i}") for i, t in enumerate(texts)]


def pad_token_ids(ids: Sequence[Sequence[int]], max_length: int, pad_id: int, eos_id: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncate, append EOS and right-pad (the T5 tokenizer's rule, module docstring).

    Args:
        ids: B token-id lists without special tokens.
        max_length: slots ``L`` (>= 1).
        pad_id, eos_id: the ids written in pad slots and after the text.

    Returns:
        ``ids [B, L]`` long and ``mask [B, L]`` bool, True on each row's first ``min(len + 1, L)`` slots.
    """
    if max_length < 1:
        raise InputError(f"max_length must be at least 1 (room for EOS), got {max_length}")
    out = torch.full((len(ids), max_length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(ids), max_length, dtype=torch.bool)
    for b, row in enumerate(ids):
        row = [*row[: max_length - 1], eos_id]
        out[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[b, : len(row)] = True
    return out, mask


def left_pad(feats: torch.Tensor, mask: torch.Tensor, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded encoder output ``feats [B, T, C]`` with ``mask [B, T]`` (valid first, ``T <=
    max_length``) -> ``feats [B, max_length, C]`` with the valid rows last and pad rows exactly zero, and
    ``mask [B, max_length]`` bool. Delegates to the backbone's
    :func:`~aromni.omnivivo.t2i_model.left_pad_captions`."""
    return left_pad_captions(feats, mask, max_length)
