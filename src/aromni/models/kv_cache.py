"""Static, preallocated key/value cache (gpt-fast / torchtune style).

Each attention layer owns one :class:`KVCache` with buffers ``[B, H_kv, S_max, D]``. Writes are indexed by the
cache slots ``input_pos`` of the incoming tokens, so prefill, one-token decode and re-prefill after a modality
switch all use the same code path. Rows of a batch may be left-padded to a common prompt length: ``left_pad[b]``
slots at the start of row ``b`` hold padding and are never attended to, and RoPE positions of row ``b`` are
``slot - left_pad[b]``, so a padded row computes exactly what it would compute alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class CacheWrite:
    """Where one cached forward call writes its keys/values.

    Attributes:
        pos: ``[T]`` consecutive slots shared by every row, or ``[B]`` one slot per row when ``per_row``.
        per_row: one-token decode where each row sits at its own slot (continuous batching: rows joined the
            batch at different times, so their sequences have different lengths).
        row: write only cache row ``row`` (prefill of one request into its row of a shared batch cache).
    """

    pos: torch.Tensor
    per_row: bool = False
    row: int | None = None


class KVCache(nn.Module):
    """Key/value buffers of one attention layer.

    Args:
        batch_size: rows ``B``.
        max_seq_len: slots ``S_max``.
        n_kv_heads: ``H_kv``.
        head_dim: ``D``.
        dtype, device: of the buffers (the model's compute dtype).
    """

    def __init__(self, batch_size: int, max_seq_len: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str | None = None):
        super().__init__()
        shape = (batch_size, n_kv_heads, max_seq_len, head_dim)
        # Non-persistent: caches never end up in a state dict or checkpoint.
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    @property
    def batch_size(self) -> int:
        return self.k.shape[0]

    @property
    def max_seq_len(self) -> int:
        return self.k.shape[2]

    def update(self, write: CacheWrite | torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_len: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v [B, H_kv, T, D]`` where ``write`` says (a tensor: the slots ``[T]`` shared by every row);
        return the filled prefix ``[B, H_kv, kv_len, D]`` of the rows written (one row for a ``write.row``
        prefill, every row otherwise)."""
        if isinstance(write, torch.Tensor):
            write = CacheWrite(write)
        if k.dtype != self.k.dtype:
            k, v = k.to(self.k.dtype), v.to(self.v.dtype)
        if write.per_row:  # the first B rows of the cache, each at its own slot
            B = k.shape[0]
            rows = torch.arange(B, device=k.device)
            # Advanced indices on dims 0 and 2 (split by a slice) put the row dim first: [B, H_kv, D].
            self.k[rows, :, write.pos] = k[:, :, 0]
            self.v[rows, :, write.pos] = v[:, :, 0]
            return self.k[:B, :, :kv_len], self.v[:B, :, :kv_len]
        keys, values = self.k, self.v
        if write.row is not None:
            keys, values = keys.narrow(0, write.row, 1), values.narrow(0, write.row, 1)
        keys.index_copy_(2, write.pos, k)
        values.index_copy_(2, write.pos, v)
        return keys[:, :, :kv_len], values[:, :, :kv_len]

    def reset(self) -> None:
        self.k.zero_()
        self.v.zero_()
