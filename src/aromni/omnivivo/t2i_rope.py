"""LlamaGen's rotary position tables (omnivivo.md §1.4), as real ``(cos, sin)`` float32 tensors.

A table has shape ``[S, P, 2]`` (``P = head_dim / 2`` rotary pairs, last axis ``(cos, sin)``) and is indexed by
sequence position; a per-row table ``[B, S, P, 2]`` gives every batch row its own rotations (OmniVIVO runs image
rows on LlamaGen's table and speech rows on another one in the same batch, §4.5).

Conventions, kept bit for bit because the released weights were trained with them:

* **Interleaved pairs**: pair ``j`` rotates channels ``(2j, 2j+1)`` of a head, not Hugging Face's
  ``rotate_half`` split ``(j, j + D/2)``.
* **2-D layout**: image position ``p = row * grid + col``; the first ``P/2`` pairs rotate by ``row * f_k``, the
  last ``P/2`` by ``col * f_k``, with ``f_k = base^(-2k / P)``, ``k = 0 .. P/2 - 1``.
* **Zero prefix**: the ``cls_token_num`` caption positions get ``cos = sin = 0``, so q and k of every caption
  token are exactly 0 in every layer (the "zero-prefix quirk", LlamaGen issue #54). Text then reaches image
  tokens only through values, with content-independent weights. :func:`rope_1d` can give the prefix real
  rotations instead (omnivivo.md §4.4 option A).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from aromni.errors import InputError


def _inv_freq(n: int, base: float, device: torch.device | str | None) -> torch.Tensor:
    """``[n / 2]`` frequencies ``1 / base^(2k / n)`` computed as LlamaGen does (float32 power of a float base)."""
    return 1.0 / (base ** (torch.arange(0, n, 2, device=device)[: n // 2].float() / n))


def _with_prefix(angles: torch.Tensor, cls_token_num: int) -> torch.Tensor:
    """``angles [S, P]`` -> table ``[cls_token_num + S, P, 2]`` with ``cls_token_num`` zero rows in front."""
    table = torch.stack([angles.cos(), angles.sin()], dim=-1)
    zeros = torch.zeros(cls_token_num, *table.shape[1:], dtype=table.dtype, device=table.device)
    return torch.cat([zeros, table])


def rope_2d(grid_size: int, head_dim: int, base: float = 10000.0, cls_token_num: int = 0,
            device: torch.device | str | None = None) -> torch.Tensor:
    """LlamaGen's 2-D table ``[cls_token_num + grid_size**2, head_dim / 2, 2]`` (float32, zero prefix rows).

    Args:
        grid_size: image tokens per side.
        head_dim: channels per head ``D`` (a multiple of 4).
        base: RoPE base.
        cls_token_num: zero rows for the caption prefix.
    """
    if head_dim % 4:
        raise InputError(f"2-D RoPE needs head_dim divisible by 4, got {head_dim}")
    half = head_dim // 2  # rotary pairs; half of them for the row, half for the column
    freqs = _inv_freq(half, base, device)  # [half / 2]
    t = torch.arange(grid_size, device=device, dtype=torch.float32)
    f = torch.outer(t, freqs)  # [grid, half / 2]
    rows = f[:, None, :].expand(grid_size, grid_size, -1)  # angle of (row, col) from the row index
    cols = f[None, :, :].expand(grid_size, grid_size, -1)  # ... and from the column index
    angles = torch.cat([rows, cols], dim=-1).reshape(grid_size * grid_size, half)  # raster order
    return _with_prefix(angles, cls_token_num)


def rope_1d(seq_len: int, head_dim: int, base: float = 10000.0, cls_token_num: int = 0, *,
            zero_prefix: bool = True, device: torch.device | str | None = None) -> torch.Tensor:
    """1-D table ``[cls_token_num + seq_len, head_dim / 2, 2]`` (float32).

    ``zero_prefix=True`` is LlamaGen's ``precompute_freqs_cis``: ``cls_token_num`` zero rows, then positions
    ``0 .. seq_len - 1``. ``zero_prefix=False`` rotates the prefix too: positions ``0 .. cls_token_num + seq_len
    - 1`` run through the whole sequence, so caption keys are non-zero and queries can attend to text by content.
    """
    if head_dim % 2:
        raise InputError(f"RoPE needs an even head_dim, got {head_dim}")
    n = seq_len if zero_prefix else cls_token_num + seq_len
    t = torch.arange(n, device=device, dtype=torch.float32)
    angles = torch.outer(t, _inv_freq(head_dim, base, device))  # [n, D / 2]
    return _with_prefix(angles, cls_token_num if zero_prefix else 0)


def row_tables(tables: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-row table ``[B, S, P, 2]`` from one ``[S_b, P, 2]`` table per row; shorter tables are padded at the end
    with zero rows (positions a row never reaches)."""
    if not tables:
        raise InputError("row_tables needs at least one table")
    S = max(t.shape[0] for t in tables)
    out = tables[0].new_zeros(len(tables), S, *tables[0].shape[1:])
    for b, t in enumerate(tables):
        out[b, : t.shape[0]] = t
    return out


def select_rope(table: torch.Tensor, positions: torch.Tensor | None, T: int) -> torch.Tensor:
    """Rotations of ``T`` tokens, shaped to broadcast against ``[B, T, H, P, 2]``: ``[1 | B, T, 1, P, 2]``.

    Args:
        table: ``[S, P, 2]`` shared by all rows or ``[B, S, P, 2]`` per row.
        positions: ``[T]`` positions of the tokens (the cache slots); ``None`` means ``0 .. T-1``.
        T: tokens in the call.
    """
    shared = table.dim() == 3
    if positions is None:
        if table.shape[-3] < T:
            raise InputError(f"sequence of {T} positions but the RoPE table covers {table.shape[-3]}",
                             "use at most cls_token_num + block_size positions")
        rot = table[:T] if shared else table[:, :T]
    else:
        rot = table[positions] if shared else table[:, positions]
    return rot[None, :, None] if shared else rot[:, :, None]


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of ``x [B, T, H, D]`` by ``rope [1 | B, T, 1, D/2, 2]``; float32 math,
    result in ``x``'s dtype. Pair ``(x0, x1)`` becomes ``(x0 cos - x1 sin, x1 cos + x0 sin)``."""
    xp = x.float().unflatten(-1, (-1, 2))  # [B, T, H, P, 2]
    x0, x1 = xp[..., 0], xp[..., 1]
    cos, sin = rope[..., 0], rope[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], dim=-1)
    return out.flatten(-2).type_as(x)
