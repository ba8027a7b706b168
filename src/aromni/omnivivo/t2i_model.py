"""LlamaGen's text-to-image transformer (``autoregressive/models/gpt.py``, t2i), rewritten on the house decoding
style: a static KV cache (:meth:`T2IBackbone.setup_caches`), prefill with ``input_pos = arange(T)``, one-token
decode with ``input_pos = tensor([t])``, no host synchronisation inside a step, float32 logits.

Module names equal LlamaGen's, so an official state dict loads strictly (omnivivo.md §1.7):
``cls_embedding.uncond_embedding`` (buffer), ``cls_embedding.cap_proj.fc1/fc2``, ``tok_embeddings``,
``layers.{i}.attention.wqkv/wo``, ``layers.{i}.feed_forward.w1/w2/w3``, ``layers.{i}.attention_norm``,
``layers.{i}.ffn_norm``, ``norm``, ``output`` (class names are ours: only attribute names reach the state
dict). RMSNorm is the house one, which like LlamaGen's normalises in float32, casts back, then scales. The RoPE
table is a plain float32 attribute, never in the state dict, recomputed from ``block_size`` (the same weights
serve the 256- and 1024-token grids).

Sequence layout: ``[caption prefix (cls_token_num); image tokens]``. Captions are T5 features ``[B, L, C]``
LEFT-padded to ``L = cls_token_num`` with a mask ``[B, L]`` (see :func:`left_pad_captions`). Attention mask rule
(LlamaGen's): causal, prefix key columns multiplied by the caption mask, then the diagonal forced on, so a pad
row attends to itself (its output is unused but stays finite).

Three ways to call it::

    logits = model(feats, codes, mask, train=True)       # teacher forcing: [B, N] codes -> [B, N, V]
    model.setup_caches(B, S_max)                          # then incremental decoding on the static KV cache:
    logits = model.forward_embeddings(model.caption_embeddings(feats), torch.arange(L), caption_mask=mask)
    logits = model.forward_embeddings(model.tok_embeddings(code[:, None]), torch.tensor([t]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aromni.errors import InputError
from aromni.models.decoder import RMSNorm
from aromni.models.kv_cache import KVCache
from aromni.omnivivo.t2i_config import T2IConfig, find_multiple
from aromni.omnivivo.t2i_rope import apply_rope, rope_2d, select_rope


class CaptionMLP(nn.Module):
    """``fc2(gelu_tanh(fc1(x)))``, bias-free, applied per caption token."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, dim, bias=False)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CaptionEmbedder(nn.Module):
    """T5 caption features ``[B, L, caption_dim]`` -> prefix embeddings ``[B, L, dim]``, with the CFG null text.

    ``uncond_embedding [cls_token_num, caption_dim]`` is a persistent buffer (it is in LlamaGen's state dict).
    """

    def __init__(self, cfg: T2IConfig):
        super().__init__()
        self.uncond_prob = cfg.class_dropout_prob
        self.cap_proj = CaptionMLP(cfg.caption_dim, cfg.dim)
        self.register_buffer("uncond_embedding",
                             torch.randn(cfg.cls_token_num, cfg.caption_dim) / cfg.caption_dim ** 0.5)

    def forward(self, caption: torch.Tensor, train: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """``train``: replace each row's whole caption by ``uncond_embedding`` with probability
        ``class_dropout_prob`` (LlamaGen's caption CFG drop)."""
        if train and self.uncond_prob > 0:
            drop = torch.rand(caption.shape[0], device=caption.device, generator=generator) < self.uncond_prob
            caption = torch.where(drop[:, None, None], self.uncond_embedding.to(caption.dtype), caption)
        return self.cap_proj(caption)


class T2IAttention(nn.Module):
    """Fused ``wqkv`` (rows ordered q | k | v), interleaved RoPE on q and k, SDPA with the default scale."""

    def __init__(self, cfg: T2IConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.wqkv = nn.Linear(cfg.dim, (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.attn_dropout_p = cfg.attn_dropout_p
        self.resid_dropout = nn.Dropout(cfg.resid_dropout_p)
        self.kv_cache: KVCache | None = None

    def project(self, x: torch.Tensor, rope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x [B, T, dim]`` -> rotated ``q [B, H, T, D]``, ``k, v [B, H_kv, T, D]``."""
        B, T, _ = x.shape
        H, Hkv, D = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = self.wqkv(x).split([H * D, Hkv * D, Hkv * D], dim=-1)
        q = apply_rope(q.view(B, T, H, D), rope)
        k = apply_rope(k.view(B, T, Hkv, D), rope)
        return q.transpose(1, 2), k.transpose(1, 2), v.view(B, T, Hkv, D).transpose(1, 2)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None,
                input_pos: torch.Tensor | None) -> torch.Tensor:
        B, T, dim = x.shape
        q, k, v = self.project(x, rope)
        if self.kv_cache is not None and input_pos is not None:
            # gpt-fast style: attend over every slot; the mask hides unwritten ones (no host-side length).
            k, v = self.kv_cache.update(input_pos, k, v, self.kv_cache.max_seq_len)
        if self.n_head != self.n_kv_head:
            k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                           dropout_p=self.attn_dropout_p if self.training else 0.0)
        return self.resid_dropout(self.wo(y.transpose(1, 2).reshape(B, T, dim)))


class T2IFeedForward(nn.Module):
    """SwiGLU ``w2(silu(w1 x) * w3 x)``, bias-free."""

    def __init__(self, cfg: T2IConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)
        self.ffn_dropout = nn.Dropout(cfg.ffn_dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class T2IBlock(nn.Module):
    """Pre-norm block: ``h = x + attn(norm(x))``, ``out = h + ffn(norm(h))``."""

    def __init__(self, cfg: T2IConfig):
        super().__init__()
        self.attention = T2IAttention(cfg)
        self.feed_forward = T2IFeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None,
                input_pos: torch.Tensor | None) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rope, mask, input_pos)
        return h + self.feed_forward(self.ffn_norm(h))


def attention_mask(query_pos: torch.Tensor, key_valid: torch.Tensor) -> torch.Tensor:
    """LlamaGen's mask ``[B, 1, T, S]`` (True = attend) for queries at positions ``query_pos [T]`` over key slots
    ``0 .. S-1`` with ``key_valid [B, S]`` (False at caption pad slots): causal AND key-valid, then the diagonal
    forced on so a pad query sees itself. Built from tensors only (no host sync)."""
    slots = torch.arange(key_valid.shape[1], device=key_valid.device)
    causal = slots[None, :] <= query_pos[:, None]  # [T, S]
    diagonal = slots[None, :] == query_pos[:, None]
    return ((causal[None] & key_valid[:, None, :]) | diagonal[None])[:, None]


def left_pad_captions(feats: torch.Tensor, mask: torch.Tensor, length: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded captions -> LlamaGen's left padding (as ``sample_t2i.py`` does by rotation).

    Args:
        feats: ``[B, L, C]`` features, valid rows first.
        mask: ``[B, L]`` (bool or 0/1), ``1`` on the valid rows, which must come first in every row.
        length: output length (``cls_token_num``); defaults to ``L``.

    Returns:
        ``feats [B, length, C]`` with each row's valid features moved to the end and pad rows exactly zero, and
        ``mask [B, length]`` bool.
    """
    B, L, C = feats.shape
    length = L if length is None else length
    if mask.shape != (B, L):
        raise InputError(f"caption mask of shape {tuple(mask.shape)} for features {tuple(feats.shape)}",
                         "pass one mask entry per caption token")
    if L > length:
        raise InputError(f"caption of {L} tokens is longer than the {length}-token prefix",
                         "truncate the T5 tokens to cls_token_num")
    mask = mask.bool()
    n = mask.sum(dim=1)  # [B] valid tokens per row
    if not torch.equal(mask, torch.arange(L, device=mask.device)[None, :] < n[:, None]):
        raise InputError("caption mask is not right-padded (valid tokens first)", "pass the tokenizer's mask")
    src = torch.arange(length, device=feats.device)[None, :] - (length - n)[:, None]  # source row per slot
    valid = src >= 0
    gathered = feats.gather(1, src.clamp(min=0)[..., None].expand(B, length, C))
    return torch.where(valid[..., None], gathered, torch.zeros((), dtype=feats.dtype)), valid


class T2IBackbone(nn.Module):
    """LlamaGen's t2i ``Transformer`` with identical module names.

    Args:
        cfg: architecture (see :class:`~aromni.omnivivo.t2i_config.T2IConfig`).

    Train mode (``self.training``) switches on the token/residual/FFN/attention dropouts, as in LlamaGen. The
    caption CFG drop is NOT tied to it: it fires only when ``train=True`` is passed. OmniVIVO trains LoRA and a
    speech branch with this backbone frozen in ``eval()`` mode and must never drop its captions, while the T2I
    pretraining recipe asks for the drop explicitly; LlamaGen's ``train=self.training`` would make the two
    impossible to tell apart.
    """

    def __init__(self, cfg: T2IConfig):
        super().__init__()
        self.cfg = cfg
        self.cls_embedding = CaptionEmbedder(cfg)
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.tok_dropout = nn.Dropout(cfg.token_dropout_p)
        self.layers = nn.ModuleList(T2IBlock(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        # Plain attribute, not a buffer: never in the state dict and never cast by model.to(bfloat16).
        self._rope: dict[torch.device, torch.Tensor] = {}
        self._key_valid: torch.Tensor | None = None  # [B, S_max] key slots outside the caption padding
        self.init_weights()

    # ------------------------------------------------------------------ init and tables
    def init_weights(self, generator: torch.Generator | None = None, zero_output: bool = True) -> None:
        """LlamaGen's init: linear and embedding weights ~ N(0, initializer_range), the output head zero (unless
        ``zero_output=False``); norms are left at 1 and ``uncond_embedding`` as built."""
        std = self.cfg.initializer_range
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    module.weight.normal_(0.0, std, generator=generator)
            if zero_output:
                self.output.weight.zero_()

    def rope_table(self, device: torch.device | None = None) -> torch.Tensor:
        """LlamaGen's 2-D table with the zero prefix ``[cls_token_num + block_size, head_dim/2, 2]`` (float32),
        cached per device."""
        device = torch.device(device) if device is not None else self.output.weight.device
        table = self._rope.get(device)
        if table is None:
            cfg = self.cfg
            # A table first built under inference_mode (generation) must still serve a later training forward,
            # which saves it for backward: build it as an ordinary tensor.
            with torch.inference_mode(False):
                table = rope_2d(cfg.grid_size, cfg.head_dim, cfg.rope_base, cfg.cls_token_num, device=device)
            self._rope[device] = table
        return table

    # ------------------------------------------------------------------ caches
    def setup_caches(self, batch_size: int, max_seq_len: int | None = None, dtype: torch.dtype | None = None,
                     device: torch.device | str | None = None) -> None:
        """Allocate a static KV cache of ``batch_size`` rows and ``max_seq_len`` slots (default: prefix plus one
        image, rounded up to a multiple of 8 as LlamaGen does) in every layer."""
        max_seq_len = max_seq_len or find_multiple(self.cfg.max_seq_len, 8)
        ref = self.output.weight
        dtype, device = dtype or ref.dtype, device or ref.device
        for layer in self.layers:
            layer.attention.kv_cache = KVCache(batch_size, max_seq_len, self.cfg.n_kv_head, self.cfg.head_dim,
                                               dtype, device)
        self._key_valid = torch.ones(batch_size, max_seq_len, dtype=torch.bool, device=device)

    def reset_caches(self) -> None:
        """Forget cached keys/values and the caption mask (keeps the allocation)."""
        for layer in self.layers:
            if layer.attention.kv_cache is not None:
                layer.attention.kv_cache.reset()
        if self._key_valid is not None:
            self._key_valid.fill_(True)

    def keep_cache_rows(self, rows: torch.Tensor) -> None:
        """Keep only cache rows ``rows [R']`` (long, in the new order): rows whose stream ended cost nothing more."""
        for layer in self.layers:
            cache = layer.attention.kv_cache
            cache.k, cache.v = cache.k.index_select(0, rows), cache.v.index_select(0, rows)
        self._key_valid = self._key_valid.index_select(0, rows)

    def clear_caches(self) -> None:
        """Free the cache buffers."""
        for layer in self.layers:
            layer.attention.kv_cache = None
        self._key_valid = None

    @property
    def cache_shape(self) -> tuple[int, int]:
        """``(rows, slots)`` of the KV cache; ``(0, 0)`` when none is set up."""
        return (0, 0) if self._key_valid is None else (self._key_valid.shape[0], self._key_valid.shape[1])

    # ------------------------------------------------------------------ embeddings
    def caption_embeddings(self, feats: torch.Tensor, *, train: bool = False,
                           generator: torch.Generator | None = None) -> torch.Tensor:
        """Prefix embeddings ``[B, cls_token_num, dim]`` from left-padded T5 features ``[B, cls_token_num,
        caption_dim]``; ``train=True`` applies the caption CFG drop (``generator`` draws it)."""
        cfg = self.cfg
        if feats.dim() != 3 or feats.shape[1:] != (cfg.cls_token_num, cfg.caption_dim):
            raise InputError(f"caption features of shape {tuple(feats.shape)}, expected "
                             f"[B, {cfg.cls_token_num}, {cfg.caption_dim}]",
                             "left-pad the T5 features to cls_token_num (left_pad_captions)")
        return self.cls_embedding(feats.to(self.output.weight.dtype), train, generator)

    def null_captions(self, batch_size: int) -> torch.Tensor:
        """The CFG null text ``[B, cls_token_num, caption_dim]`` (``uncond_embedding`` repeated)."""
        return self.cls_embedding.uncond_embedding[None].expand(batch_size, -1, -1)

    # ------------------------------------------------------------------ forward
    def forward(self, feats: torch.Tensor, codes: torch.Tensor, caption_mask: torch.Tensor | None = None, *,
                train: bool = False, rope: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Teacher-forced forward (LlamaGen's training forward, no cache).

        The sequence is ``[caption prefix; tok_embeddings(codes[:, :-1])]`` (no BOS): the logits at position
        ``cls_token_num - 1`` predict ``codes[:, 0]``, and so on.

        Args:
            feats: ``[B, cls_token_num, caption_dim]`` left-padded caption features.
            codes: ``[B, N]`` image codes, ``1 <= N <= block_size`` (raster order).
            caption_mask: ``[B, cls_token_num]`` (``None``: every caption token valid).
            train: apply the caption CFG drop (see the class docstring).
            rope: override table ``[S, D/2, 2]`` or per row ``[B, S, D/2, 2]``.
            generator: draws the caption CFG drop.

        Returns:
            ``[B, N, V]`` float32 logits; row ``i`` predicts ``codes[:, i]``.
        """
        N = codes.shape[1]
        if not 1 <= N <= self.cfg.block_size:
            raise InputError(f"{N} image codes per row, expected 1 to {self.cfg.block_size}")
        self._check_codes(codes)
        x = torch.cat([self.caption_embeddings(feats, train=train, generator=generator),
                       self.tok_embeddings(codes[:, :-1])], dim=1)
        h = self.forward_embeddings(x, caption_mask=caption_mask, rope=rope, return_hidden=True)
        return self.head(h[:, self.cfg.cls_token_num - 1:])

    def forward_embeddings(self, x: torch.Tensor, input_pos: torch.Tensor | None = None, *,
                           caption_mask: torch.Tensor | None = None, rope: torch.Tensor | None = None,
                           logits_to_keep: int | None = None, return_hidden: bool = False) -> torch.Tensor:
        """Run the blocks on embeddings (the entry point for prefill, decode and OmniVIVO's own rows).

        Args:
            x: ``[B, T, dim]`` embeddings (caption prefix from :meth:`caption_embeddings`, image tokens from
                ``tok_embeddings``, or anything else of width ``dim``).
            input_pos: ``[T]`` cache slots (= positions) of the tokens; requires :meth:`setup_caches`.
                ``None`` runs a cache-free causal forward from position 0.
            caption_mask: ``[B, L]`` validity of slots ``0 .. L-1`` (the caption prefix). In a cached call it is
                remembered for the later decode steps; give it with the prefill.
            rope: override table ``[S, D/2, 2]`` or per row ``[B, S, D/2, 2]`` (default: :meth:`rope_table`).
            logits_to_keep: compute the output for the last ``n`` positions only.
            return_hidden: return the last block's output ``[B, T', dim]`` (before the final ``norm``).

        Returns:
            ``[B, T', V]`` float32 logits (``T' = logits_to_keep or T``), or hidden states.
        """
        B, T, _ = x.shape
        rot = select_rope(self.rope_table(x.device) if rope is None else rope.to(x.device), input_pos, T)
        if input_pos is None:
            mask = None if caption_mask is None else self._uncached_mask(caption_mask, T)
        else:
            self._check_cached_call(B, caption_mask)
            if caption_mask is not None:
                self._key_valid[:, : caption_mask.shape[1]] = caption_mask.to(self._key_valid.device).bool()
            mask = attention_mask(input_pos, self._key_valid)
        h = self.tok_dropout(x)
        for layer in self.layers:
            h = layer(h, rot, mask, input_pos)
        if logits_to_keep is not None:
            h = h[:, -logits_to_keep:]
        return h if return_hidden else self.head(h)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final ``norm`` and ``output`` on last-block hidden states ``[..., dim]`` -> float32 logits ``[..., V]``."""
        logits = self.output(self.norm(hidden))
        return logits if logits.dtype == torch.float32 else logits.float()

    # ------------------------------------------------------------------ checks
    def _uncached_mask(self, caption_mask: torch.Tensor, T: int) -> torch.Tensor:
        B, L = caption_mask.shape
        if L > T:
            raise InputError(f"caption mask covers {L} positions but the sequence has {T}")
        key_valid = torch.ones(B, T, dtype=torch.bool, device=caption_mask.device)
        key_valid[:, :L] = caption_mask.bool()
        return attention_mask(torch.arange(T, device=caption_mask.device), key_valid)

    def _check_cached_call(self, B: int, caption_mask: torch.Tensor | None) -> None:
        rows, slots = self.cache_shape
        if rows == 0:
            raise InputError("input_pos given but no KV cache is set up", "call model.setup_caches(batch, max_len)")
        if B != rows:
            raise InputError(f"batch of {B} rows but the cache holds {rows}", "call setup_caches with this batch")
        if caption_mask is not None and (caption_mask.shape[0] != B or caption_mask.shape[1] > slots):
            raise InputError(f"caption mask of shape {tuple(caption_mask.shape)} for a cache of {rows}x{slots}")

    def _check_codes(self, codes: torch.Tensor) -> None:
        # Out-of-range ids would be a fatal device-side assert on an accelerator; this forward is the training
        # path, where one reduction per batch is cheap (the decode step never checks: it feeds sampled ids).
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.cfg.vocab_size):
            raise InputError(f"image code outside [0, {self.cfg.vocab_size})", "check the VQ tokenizer's codebook")
