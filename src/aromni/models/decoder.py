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

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from aromni.errors import InputError
from aromni.models.config import DecoderConfig
from aromni.models.kv_cache import KVCache


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dim, computed in float32 (as Chameleon does) and cast back."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


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
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


def rope_tables(max_len: int, head_dim: int, theta: float, device: torch.device | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables ``[max_len, head_dim]`` for half-split RoPE, in float32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    t = torch.arange(max_len, dtype=torch.int64, device=device).float()
    freqs = torch.outer(t, inv_freq)  # (S, D/2)
    emb = torch.cat([freqs, freqs], dim=-1)  # (S, D)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [B, T, H, D]`` by ``cos, sin [B, T, D]`` (half-split / ``rotate_half`` convention)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]


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

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                input_pos: torch.Tensor | None, kv_len: int) -> torch.Tensor:
        B, T, _ = x.shape
        H, Hkv, D = self.n_heads, self.n_kv_heads, self.head_dim
        q, k, v = self.qkv(x).split([H * D, Hkv * D, Hkv * D], dim=-1)
        q, k, v = q.view(B, T, H, D), k.view(B, T, Hkv, D), v.view(B, T, Hkv, D)
        if self.q_norm is not None:
            # Chameleon normalises q and k per head before RoPE (QK-norm).
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin).to(v.dtype), apply_rope(k, cos, sin).to(v.dtype)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        if self.cache is not None and input_pos is not None:
            k, v = self.cache.update(input_pos, k, v, kv_len)
        is_causal = mask is None and input_pos is None and T > 1
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=H != Hkv)
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

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                input_pos: torch.Tensor | None, kv_len: int) -> torch.Tensor:
        if self.swin_norm:
            # Residual-post-norm (swin-norm, paper eq. 5-6): the norm sits on the residual branch's output.
            h = x + self.attn_norm(self.attn(x, cos, sin, mask, input_pos, kv_len))
            return h + self.mlp_norm(self.mlp(h))
        h = x + self.attn(self.attn_norm(x), cos, sin, mask, input_pos, kv_len)
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
        self._rope: dict[tuple[torch.device, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._left_pad: torch.Tensor | None = None

    # ------------------------------------------------------------------ init
    def init_weights(self, std: float = 0.02, generator: torch.Generator | None = None) -> None:
        """Random init for training from scratch: normal(0, std) matrices, output projections scaled by depth."""
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                s = std / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("o_proj.weight", "down.weight")) else std
                with torch.no_grad():
                    p.normal_(0.0, s, generator=generator)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.ones_(p)

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

    def reset_caches(self) -> None:
        """Forget cached keys/values and left padding (keeps the allocation)."""
        for layer in self.layers:
            if layer.attn.cache is not None:
                layer.attn.cache.reset()
        if self._left_pad is not None:
            self._left_pad.zero_()

    def clear_caches(self) -> None:
        """Free the cache buffers."""
        for layer in self.layers:
            layer.attn.cache = None
        self._left_pad = None

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
    def _rope_for(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin ``[B, T, D]`` for integer ``positions [B, T]``."""
        need = int(positions.max()) + 1 if positions.numel() else 1
        key = (positions.device, 0)
        cached = self._rope.get(key)
        if cached is None or cached[0].shape[0] < need:
            n = max(need, self.cfg.max_seq_len)
            cached = rope_tables(n, self.cfg.head_dim, self.cfg.rope_theta, positions.device)
            self._rope[key] = cached
        cos, sin = cached
        return cos[positions].to(dtype), sin[positions].to(dtype)

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor | None = None, *,
                left_pad: torch.Tensor | None = None, segment_ids: torch.Tensor | None = None,
                logits_to_keep: int | None = None, return_hidden: bool = False) -> torch.Tensor:
        """Run the decoder.

        Args:
            tokens: ``[B, T]`` token ids.
            input_pos: ``[T]`` cache slots of the tokens (requires :meth:`setup_caches`). ``None`` runs a
                cache-free full causal forward.
            left_pad: ``[B]`` padding slots at the start of each row, given with the prefill call and
                remembered by the cache for later decode calls.
            segment_ids: ``[B, T]`` for packed rows (cache-free only): attention stays within a segment and
                positions restart at 0 at each segment start.
            logits_to_keep: compute logits for the last ``n`` positions only (prefill needs one).
            return_hidden: return the final normed hidden states ``[B, T, dim]`` instead of logits.

        Returns:
            ``[B, T', V]`` float32 logits (``T' = logits_to_keep or T``), or hidden states.
        """
        B, T = tokens.shape
        if int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.vocab_size:
            raise InputError(f"token id outside [0, {self.cfg.vocab_size})", "check the vocabulary layout")
        x = self.embed(tokens)
        mask, kv_len = None, T
        if input_pos is None:
            if segment_ids is None:
                positions = torch.arange(T, device=tokens.device).expand(B, T)
            else:
                positions, mask = _packed_positions_and_mask(segment_ids)
        else:
            if not self.caches_enabled:
                raise InputError("input_pos given but no KV cache is set up", "call decoder.setup_caches(batch, max_len)")
            if segment_ids is not None:
                raise InputError("segment_ids (packing) cannot be combined with the KV cache")
            if B != self.cache_batch_size:
                raise InputError(f"batch of {B} rows but the cache holds {self.cache_batch_size}",
                                 "call setup_caches with the batch size you decode")
            kv_len = int(input_pos[-1]) + 1
            if kv_len > self.cache_max_seq_len:
                raise InputError(f"sequence of {kv_len} tokens exceeds the cache's {self.cache_max_seq_len} slots",
                                 "shorten the prompt or raise max_seq_len")
            if left_pad is not None:
                self._left_pad.copy_(left_pad.to(self._left_pad))
            positions, mask = _cached_positions_and_mask(input_pos, self._left_pad, kv_len)
        cos, sin = self._rope_for(positions, x.dtype)
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x = checkpoint(layer, x, cos, sin, mask, input_pos, kv_len, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, input_pos, kv_len)
        if logits_to_keep is not None:
            x = x[:, -logits_to_keep:]
        x = self.norm(x)
        if return_hidden:
            return x
        return self.lm_head(x).float()

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head on final normed hidden states ``[..., dim]`` -> float32 logits ``[..., V]``."""
        return self.lm_head(hidden).float()


def _cached_positions_and_mask(input_pos: torch.Tensor, left_pad: torch.Tensor, kv_len: int
                               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """RoPE positions ``[B, T]`` and boolean attention mask ``[B, 1, T, kv_len]`` for cached decoding."""
    positions = (input_pos[None, :] - left_pad[:, None]).clamp(min=0)
    T = input_pos.shape[0]
    if not bool(left_pad.any()) and T == 1:
        return positions, None  # one new token, no padding: it attends to every filled slot
    slots = torch.arange(kv_len, device=input_pos.device)
    causal = slots[None, :] <= input_pos[:, None]  # (T, S)
    valid = slots[None, :] >= left_pad[:, None]  # (B, S)
    mask = causal[None] & valid[:, None, :]
    # A padding query would otherwise see no key at all (NaN softmax); let it see itself. Its output is unused.
    mask = mask | (slots[None, None, :] == input_pos[None, :, None])
    return positions, mask[:, None]


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
