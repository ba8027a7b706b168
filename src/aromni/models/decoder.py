"""The Chameleon-architecture decoder: RMSNorm, QK-norm, optional swin-norm, RoPE, SwiGLU, GQA.

Weights live in *our* layout (see ``aromni.models.checkpoint`` for the Meta-native and both Hugging Face layouts):

* q/k projections are stored in the half-split RoPE convention (Hugging Face's ``rotate_half``), i.e. Meta's
  interleaved ``wq``/``wk`` rows permuted per head; the permutation is exact, so logits match to the last bit.
* QK-norm weights are per head: ``q_norm.weight [n_heads, head_dim]``, ``k_norm.weight [n_kv_heads, head_dim]``
  (Meta and Anole store one ``[head_dim]`` vector shared by all heads; loaders repeat it).
* q/k/v are one fused ``qkv`` projection and gate/up one fused ``gate_up`` projection (fewer matmuls per token).

The model returns raw logits: no loss and no logit masking live here (decoding policy is in ``aromni.inference``,
losses in ``aromni.training``).

Three ways to call it::

    logits = decoder(tokens)                          # [B,T] -> [B,T,V], full causal forward (training)
    logits = decoder(tokens, segment_ids=seg)          # packed rows: block-diagonal causal, positions restart
    decoder.setup_caches(B, S_max)                     # then incremental decoding on the static KV cache:
    logits = decoder(prompt, input_pos=torch.arange(T), left_pad=pad)   # prefill (rows left-padded by pad[b])
    logits = decoder(next_tok[:, None], input_pos=torch.tensor([T]))    # one-token decode
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from aromni.errors import InputError
from aromni.models.config import DecoderConfig
from aromni.models.kv_cache import CacheWrite, KVCache


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dim, computed in float32 (as Chameleon does) and cast back."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One fused kernel instead of pow/mean/rsqrt/mul (same float32 math, fewer dispatches per token).
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return torch.rms_norm(x, self.weight.shape, self.weight, self.eps)
        # Low precision: normalise in float32, cast back, then scale in the input dtype (as Chameleon / HF do).
        return self.weight * torch.rms_norm(x.float(), self.weight.shape, None, self.eps).to(x.dtype)


class HeadLayerNorm(nn.Module):
    """Chameleon's QK-norm: LayerNorm over ``head_dim`` with a separate affine per head.

    Input ``[B, T, H, D]``; weight and bias ``[H, D]``.
    """

    def __init__(self, n_heads: int, head_dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_heads, head_dim))
        self.bias = nn.Parameter(torch.zeros(n_heads, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, F.layer_norm(x, x.shape[-1:], eps=self.eps), self.weight)


def rope_tables(max_len: int, head_dim: int, theta: float, device: torch.device | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables ``[max_len, head_dim]`` for half-split RoPE, in float32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    t = torch.arange(max_len, dtype=torch.int64, device=device).float()
    freqs = torch.outer(t, inv_freq)  # (S, D/2)
    emb = torch.cat([freqs, freqs], dim=-1)  # (S, D)
    return emb.cos(), emb.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, half-split convention (``x*cos + rotate_half(x)*sin``, ``rotate_half([x1, x2]) =
    [-x2, x1]``), in three kernels: ``x*cos + swap_halves(x)*sin_signed``, where ``sin_signed`` holds
    ``-sin`` in its first half (so ``swap_halves(x)*sin_signed == rotate_half(x)*sin``). ``cos``/``sin_signed``
    broadcast against ``x [B, T, H, D]`` as ``[B | 1, T, 1, D]``."""
    swapped = torch.roll(x, x.shape[-1] // 2, dims=-1)  # [x2, x1]
    return torch.addcmul(x * cos, swapped, sin_signed)


class Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.dim, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        if cfg.qk_norm:
            self.q_norm = HeadLayerNorm(cfg.n_heads, cfg.head_dim, cfg.qk_norm_eps)
            self.k_norm = HeadLayerNorm(cfg.n_kv_heads, cfg.head_dim, cfg.qk_norm_eps)
        else:
            self.q_norm = self.k_norm = None
        self.cache: KVCache | None = None

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None,
                causal: bool, write: CacheWrite | None, kv_len: int) -> torch.Tensor:
        B, T, _ = x.shape
        H, Hkv, D = self.n_heads, self.n_kv_heads, self.head_dim
        qkv = self.qkv(x)
        # q and k are adjacent in the fused projection: normalise and rotate them as one [B, T, H + Hkv, D] tensor.
        qk = qkv[..., : (H + Hkv) * D].view(B, T, H + Hkv, D)
        v = qkv[..., (H + Hkv) * D:].view(B, T, Hkv, D)
        if self.q_norm is not None:
            # Chameleon normalises q and k per head before RoPE (QK-norm).
            weight = torch.cat([self.q_norm.weight, self.k_norm.weight])
            bias = torch.cat([self.q_norm.bias, self.k_norm.bias])
            qk = torch.addcmul(bias, F.layer_norm(qk, (D,), eps=self.q_norm.eps), weight)
        qk = _rotate(qk, *rope)
        cached = self.cache is not None and write is not None
        cpu_autocast = x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not cached
        if cpu_autocast:
            # bf16 autocast on CPU (training, cache-free): attention runs in float32. The CPU's bf16
            # flash-attention kernel is slower than its float32 one at these head sizes (41 vs 33 ms forward +
            # backward for [8, 8, 256, 32] on one AVX-512 core), and float32 is the more exact of the two.
            qk, v = qk.float(), v.float()
        elif qk.dtype != v.dtype:
            qk = qk.to(v.dtype)
        q, k, v = qk[:, :, :H].transpose(1, 2), qk[:, :, H:].transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        if cached:
            k, v = self.cache.update(write, k, v, kv_len)
        with torch.autocast("cpu", enabled=False) if cpu_autocast else contextlib.nullcontext():
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=H != Hkv)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H * D))


class FeedForward(nn.Module):
    """SwiGLU: ``down(silu(gate(x)) * up(x))`` with gate and up fused into one projection."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.ffn_dim = cfg.ffn_dim
        self.gate_up = nn.Linear(cfg.dim, 2 * cfg.ffn_dim, bias=False)
        self.down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).split(self.ffn_dim, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.swin_norm = cfg.swin_norm
        self.attn = Attention(cfg)
        self.mlp = FeedForward(cfg)
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None,
                causal: bool, write: CacheWrite | None, kv_len: int) -> torch.Tensor:
        if self.swin_norm:
            # Residual-post-norm (swin-norm, paper eq. 5-6): the norm sits on the residual branch's output.
            h = x + self.attn_norm(self.attn(x, rope, mask, causal, write, kv_len))
            return h + self.mlp_norm(self.mlp(h))
        h = x + self.attn(self.attn_norm(x), rope, mask, causal, write, kv_len)
        return h + self.mlp(self.mlp_norm(h))


class Decoder(nn.Module):
    """Chameleon-architecture decoder-only transformer.

    Args:
        cfg: architecture.

    Attributes:
        gradient_checkpointing: recompute each block in the backward pass (training memory saver).
    """

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.gradient_checkpointing = False
        self._rope: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
        self._left_pad: torch.Tensor | None = None
        self._any_pad = False  # host-side copy of left_pad.any(), set at prefill
        self._valid: torch.Tensor | None = None  # [B, S_max] key slots outside the left padding

    # ------------------------------------------------------------------ init
    def init_weights(self, std: float = 0.02, generator: torch.Generator | None = None) -> None:
        """Random init for training from scratch: normal(0, std) matrices, output projections scaled by depth."""
        for name, p in self.named_parameters():
            # Norm gains/biases first: QK-norm affines are [heads, head_dim] (2-D) but must start at 1 / 0.
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif "norm" in name.rsplit(".", 2)[-2]:
                nn.init.ones_(p)
            else:
                s = std / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("o_proj.weight", "down.weight")) else std
                with torch.no_grad():
                    p.normal_(0.0, s, generator=generator)

    # ------------------------------------------------------------------ caches
    def setup_caches(self, batch_size: int, max_seq_len: int | None = None, dtype: torch.dtype | None = None,
                     device: torch.device | str | None = None) -> None:
        """Allocate a static KV cache of ``batch_size`` rows and ``max_seq_len`` slots in every layer."""
        max_seq_len = max_seq_len or self.cfg.max_seq_len
        ref = self.embed.weight
        dtype = dtype or ref.dtype
        device = device or ref.device
        for layer in self.layers:
            layer.attn.cache = KVCache(batch_size, max_seq_len, self.cfg.n_kv_heads, self.cfg.head_dim, dtype, device)
        self._left_pad = torch.zeros(batch_size, dtype=torch.long, device=device)
        self._any_pad = False
        self._valid = None

    def reset_caches(self) -> None:
        """Forget cached keys/values and left padding (keeps the allocation)."""
        for layer in self.layers:
            if layer.attn.cache is not None:
                layer.attn.cache.reset()
        if self._left_pad is not None:
            self._left_pad.zero_()
        self._any_pad, self._valid = False, None

    def clear_caches(self) -> None:
        """Free the cache buffers."""
        for layer in self.layers:
            layer.attn.cache = None
        self._left_pad, self._any_pad, self._valid = None, False, None

    @property
    def caches_enabled(self) -> bool:
        return self._left_pad is not None

    @property
    def cache_batch_size(self) -> int:
        return 0 if self._left_pad is None else int(self._left_pad.shape[0])

    @property
    def cache_max_seq_len(self) -> int:
        cache = self.layers[0].attn.cache if len(self.layers) else None
        return 0 if cache is None else cache.max_seq_len

    # ------------------------------------------------------------------ forward
    def _rope_table(self, n: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin_signed [N >= n, D]`` in ``dtype`` (see :func:`_rotate`), cached per device and dtype."""
        key = (device, dtype)
        cached = self._rope.get(key)
        if cached is None or cached[0].shape[0] < n:
            cos, sin = rope_tables(max(n, self.cfg.max_seq_len), self.cfg.head_dim, self.cfg.rope_theta, device)
            half = self.cfg.head_dim // 2
            sin = torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)
            # Tables are computed in float32 and cast once, as HF casts cos/sin to the activation dtype.
            cached = (cos.to(dtype), sin.to(dtype))
            self._rope[key] = cached
        return cached

    def _rope_for(self, positions: torch.Tensor, dtype: torch.dtype, need: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin_signed broadcastable to ``[B, T, H, D]`` for integer ``positions`` (``[T]`` or ``[B, T]``)."""
        if need is None:
            need = int(positions.max()) + 1 if positions.numel() else 1
        cos, sin = self._rope_table(need, positions.device, dtype)
        cos, sin = cos[positions], sin[positions]
        if positions.dim() == 1:
            return cos[None, :, None], sin[None, :, None]
        return cos[:, :, None], sin[:, :, None]

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor | None = None, *,
                left_pad: torch.Tensor | None = None, segment_ids: torch.Tensor | None = None,
                logits_to_keep: int | None = None, return_hidden: bool = False,
                row_pos: torch.Tensor | None = None, cache_row: int | None = None) -> torch.Tensor:
        """Run the decoder.

        Args:
            tokens: ``[B, T]`` token ids.
            input_pos: ``[T]`` cache slots of the tokens (requires :meth:`setup_caches`), consecutive and
                increasing. ``None`` runs a cache-free full causal forward.
            left_pad: ``[B]`` padding slots at the start of each row, given with the prefill call and
                remembered by the cache for later decode calls.
            segment_ids: ``[B, T]`` for packed rows (cache-free only): attention stays within a segment and
                positions restart at 0 at each segment start.
            logits_to_keep: compute logits for the last ``n`` positions only (prefill needs one).
            return_hidden: return the final normed hidden states ``[B, T, dim]`` instead of logits.
            row_pos: ``[B]`` one-token decode (``tokens [B, 1]``, no ``input_pos``) where row ``b`` writes at its
                own slot ``row_pos[b]`` and attends to its slots ``0..row_pos[b]`` (beyond its left padding, if
                the cache was prefilled left-padded) over the whole cache: fixed shapes and no host sync in a
                compiled step (the engines' ``compile=True``), and continuous batching (rows at different
                lengths). ``B`` may be less than the cache's rows: the first ``B`` are used.
            cache_row: with ``input_pos``, run ``tokens [1, T]`` into cache row ``cache_row`` only (a request
                joining a batch cache is prefilled into its free row while the other rows keep their state).

        Returns:
            ``[B, T', V]`` float32 logits (``T' = logits_to_keep or T``), or hidden states.
        """
        B, T = tokens.shape
        x = self._embed(tokens)
        write: CacheWrite | None = None
        if row_pos is not None:
            kv_len, write = self._check_row_call(tokens, input_pos, row_pos, segment_ids)
            rope, mask = self._row_rope_and_mask(row_pos, x.dtype)
            causal = False
        elif input_pos is None:
            kv_len = T
            if segment_ids is None:
                cos, sin = self._rope_table(T, tokens.device, x.dtype)
                rope, mask, causal = (cos[None, :T, None], sin[None, :T, None]), None, T > 1
            else:
                positions, mask = _packed_positions_and_mask(segment_ids)
                rope, causal = self._rope_for(positions, x.dtype), False
        else:
            kv_len = self._check_cached_call(B, input_pos, segment_ids, cache_row)
            if left_pad is not None:
                self._set_left_pad(left_pad)
            rope, mask, causal = self._cached_rope_and_mask(input_pos, kv_len, x.dtype)
            write = CacheWrite(input_pos, row=cache_row)
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x = checkpoint(layer, x, rope, mask, causal, write, kv_len, use_reentrant=False)
            else:
                x = layer(x, rope, mask, causal, write, kv_len)
        if logits_to_keep is not None:
            x = x[:, -logits_to_keep:]
        x = self.norm(x)
        if return_hidden:
            return x
        logits = self.lm_head(x)
        return logits if logits.dtype == torch.float32 else logits.float()

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.device.type == "cpu":
            # The CPU embedding kernel bounds-checks every id itself: no extra kernels or syncs per step.
            try:
                return self.embed(tokens)
            except IndexError:
                raise self._bad_token() from None
        lo, hi = torch.aminmax(tokens)  # elsewhere an out-of-range id would be a fatal device-side assert
        if int(lo) < 0 or int(hi) >= self.cfg.vocab_size:
            raise self._bad_token()
        return self.embed(tokens)

    def _bad_token(self) -> InputError:
        return InputError(f"token id outside [0, {self.cfg.vocab_size})", "check the vocabulary layout")

    def _check_cached_call(self, B: int, input_pos: torch.Tensor, segment_ids: torch.Tensor | None,
                           cache_row: int | None = None) -> int:
        """Validate a cached call; return ``kv_len`` (filled slots after it)."""
        if not self.caches_enabled:
            raise InputError("input_pos given but no KV cache is set up", "call decoder.setup_caches(batch, max_len)")
        if segment_ids is not None:
            raise InputError("segment_ids (packing) cannot be combined with the KV cache")
        if cache_row is not None:
            if B != 1 or not 0 <= cache_row < self.cache_batch_size:
                raise InputError(f"cache_row={cache_row} takes one row of tokens into a cache of "
                                 f"{self.cache_batch_size} rows, got {B} rows")
            if self._any_pad:
                raise InputError("cache_row cannot be used on a cache holding left-padded rows")
        elif B != self.cache_batch_size:
            raise InputError(f"batch of {B} rows but the cache holds {self.cache_batch_size}",
                             "call setup_caches with the batch size you decode")
        kv_len = int(input_pos[-1]) + 1
        if kv_len > self.cache_max_seq_len:
            raise InputError(f"sequence of {kv_len} tokens exceeds the cache's {self.cache_max_seq_len} slots",
                             "shorten the prompt or raise max_seq_len")
        return kv_len

    def _check_row_call(self, tokens: torch.Tensor, input_pos: torch.Tensor | None, row_pos: torch.Tensor,
                        segment_ids: torch.Tensor | None) -> tuple[int, CacheWrite]:
        """Validate a per-row one-token decode; return ``kv_len`` (slots any row may see) and the write."""
        if input_pos is not None or segment_ids is not None:
            raise InputError("row_pos replaces input_pos (one slot per row); it takes no input_pos or segment_ids")
        if not self.caches_enabled:
            raise InputError("row_pos given but no KV cache is set up", "call decoder.setup_caches(batch, max_len)")
        B, T = tokens.shape
        if T != 1 or row_pos.shape != (B,) or B > self.cache_batch_size:
            raise InputError(f"row_pos decodes one token per cache row: got tokens {tuple(tokens.shape)} and "
                             f"row_pos {tuple(row_pos.shape)} for a cache of {self.cache_batch_size} rows")
        # The value check reads the positions on the host: eager calls only (a compiled step must not sync; its
        # callers, the engines, keep the positions in range).
        if not torch.compiler.is_compiling() and (int(row_pos.min()) < 0
                                                  or int(row_pos.max()) >= self.cache_max_seq_len):
            raise InputError(f"row_pos outside the cache's {self.cache_max_seq_len} slots")
        # Every row attends over the whole cache (masked beyond its own slot), as gpt-fast's static cache does:
        # the shapes never change, and a row's arithmetic does not depend on the other rows' lengths (the
        # attention kernels block the key axis by its length, which moves the last bits of the result).
        return self.cache_max_seq_len, CacheWrite(row_pos, per_row=True)

    def _row_rope_and_mask(self, row_pos: torch.Tensor, dtype: torch.dtype
                           ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """RoPE tables and the ``[B, 1, 1, S_max]`` mask of a per-row decode: row ``b`` sees its slots
        ``left_pad[b]..row_pos[b]`` at RoPE positions ``slot - left_pad[b]``. Fixed shapes, no host sync."""
        B = row_pos.shape[0]
        slots = torch.arange(self.cache_max_seq_len, device=row_pos.device)
        mask = slots[None, :] <= row_pos[:, None]
        positions = row_pos
        if self._any_pad:
            positions = (row_pos - self._left_pad[:B]).clamp(min=0)
            mask = mask & self._valid[:B]
        return self._rope_for(positions[:, None], dtype, self.cache_max_seq_len), mask[:, None, None, :]

    def _set_left_pad(self, left_pad: torch.Tensor) -> None:
        self._left_pad.copy_(left_pad.to(self._left_pad))
        self._any_pad = bool(self._left_pad.any())
        # Key slots each row may attend to, built once per prompt instead of once per decoded token.
        slots = torch.arange(self.cache_max_seq_len, device=self._left_pad.device)
        self._valid = (slots[None, :] >= self._left_pad[:, None]) if self._any_pad else None

    def _cached_rope_and_mask(self, input_pos: torch.Tensor, kv_len: int, dtype: torch.dtype
                              ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor | None, bool]:
        """RoPE tables, attention mask and causal flag for a cached call (no host sync beyond ``kv_len``)."""
        T = input_pos.shape[0]
        if not self._any_pad:
            # input_pos is consecutive, so its RoPE rows are the slice ending at kv_len (a view, no gather).
            cos, sin = self._rope_table(self.cache_max_seq_len, input_pos.device, dtype)
            rope = cos[None, kv_len - T:kv_len, None], sin[None, kv_len - T:kv_len, None]
            if T == 1:
                return rope, None, False  # one new token attends to every filled slot
            if kv_len == T:
                return rope, None, True  # a prefill from slot 0: plain causal attention
            return rope, _causal_mask(input_pos, kv_len)[None, None], False
        positions = (input_pos[None, :] - self._left_pad[:, None]).clamp(min=0)
        rope = self._rope_for(positions, dtype, self.cache_max_seq_len)
        valid = self._valid[:, :kv_len]  # (B, S)
        if T == 1:
            return rope, valid[:, None, None, :], False
        mask = _causal_mask(input_pos, kv_len)[None] & valid[:, None, :]
        # A padding query would otherwise see no key at all (NaN softmax); let it see itself. Its output is unused.
        slots = torch.arange(kv_len, device=input_pos.device)
        mask = mask | (slots[None, None, :] == input_pos[None, :, None])
        return rope, mask[:, None], False

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head on final normed hidden states ``[..., dim]`` -> float32 logits ``[..., V]``."""
        return self.lm_head(hidden).float()


def _causal_mask(input_pos: torch.Tensor, kv_len: int) -> torch.Tensor:
    """``[T, kv_len]``: query at slot ``input_pos[t]`` sees key slots ``<= input_pos[t]``."""
    slots = torch.arange(kv_len, device=input_pos.device)
    return slots[None, :] <= input_pos[:, None]


def _packed_positions_and_mask(segment_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions restarting per segment ``[B, T]`` and a block-diagonal causal mask ``[B, 1, T, T]``."""
    B, T = segment_ids.shape
    idx = torch.arange(T, device=segment_ids.device).expand(B, T)
    is_start = torch.ones_like(segment_ids, dtype=torch.bool)
    is_start[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    start = torch.where(is_start, idx, torch.zeros_like(idx)).cummax(dim=1).values
    positions = idx - start
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    causal = torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()
    return positions, (same & causal)[:, None]
