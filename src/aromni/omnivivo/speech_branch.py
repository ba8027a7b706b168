"""OmniVIVO's trainable speech modules (omnivivo.md §4.2, §4.4): the speech-token embedding that feeds the
backbone, and the speech branch ``f_phi`` with its head ``W_phi`` on top of the backbone's tapped hidden states.

The branch reuses the backbone's block class (:class:`~aromni.omnivivo.t2i_model.T2IBlock`: the same pre-norm
attention + SwiGLU math) with its own 1-D RoPE whose caption prefix has REAL rotations (positions ``0 .. T + L -
1`` run through the whole sequence), its own final RMSNorm, a head ``Linear(dim -> K + 1)`` (EOS = ``K``) and its
own static KV cache. It runs over the whole sequence ``[caption prefix (T); speech tokens]`` with LlamaGen's mask
rule (causal, caption pad keys hidden, diagonal forced on).

Init: every Linear and the embedding ``~ N(0, initializer_range)`` as LlamaGen's ``init_weights``, the head
included (LlamaGen zeroes its image head; a zero head here would leave the branch without gradient on the first
step, for nothing).
"""

from __future__ import annotations

import torch
from torch import nn

from aromni.errors import InputError
from aromni.models.decoder import RMSNorm
from aromni.models.kv_cache import KVCache
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBlock, attention_mask
from aromni.omnivivo.t2i_rope import rope_1d, select_rope
from aromni.omnivivo.vivo_config import VivoConfig


class SpeechBranch(nn.Module):
    """Speech embedding, ``N`` blocks, RMSNorm and head.

    Args:
        cfg: the speech path's configuration.
        backbone: the backbone's configuration (input width, caption length, RoPE base, norm eps).

    Attributes:
        speech_embedding: ``Embedding(K + 1, backbone.dim)``, speech codes (and EOS) -> backbone inputs (the
            backbone's ``tok_embeddings`` only covers image codes).
        in_proj: ``Linear(backbone.dim -> branch dim)`` when the widths differ, else ``None``.
        layers, norm, head: the branch proper; ``head`` maps to ``K + 1`` logits.
    """

    def __init__(self, cfg: VivoConfig, backbone: T2IConfig):
        super().__init__()
        self.cfg, self.block_cfg = cfg, cfg.branch_config(backbone)
        self.cls_token_num = backbone.cls_token_num
        dim = self.block_cfg.dim
        self.speech_embedding = nn.Embedding(cfg.n_speech_ids, backbone.dim)
        self.in_proj = nn.Linear(backbone.dim, dim, bias=False) if dim != backbone.dim else None
        self.layers = nn.ModuleList(T2IBlock(self.block_cfg) for _ in range(cfg.branch_layers))
        self.norm = RMSNorm(dim, self.block_cfg.norm_eps)
        self.head = nn.Linear(dim, cfg.n_speech_ids, bias=False)
        self._rope: dict[torch.device, torch.Tensor] = {}  # plain attribute: never in the state dict
        self._key_valid: torch.Tensor | None = None  # [B, S] key slots outside the caption padding
        self.init_weights()

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Linear and embedding weights ``~ N(0, initializer_range)``; norms at 1."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    module.weight.normal_(0.0, self.block_cfg.initializer_range, generator=generator)

    def rope_table(self, device: torch.device) -> torch.Tensor:
        """1-D table with a real prefix ``[cls_token_num + max_speech_len, head_dim / 2, 2]`` (float32)."""
        table = self._rope.get(device)
        if table is None:
            with torch.inference_mode(False):  # built under generation, reused by a later training forward
                table = rope_1d(self.cfg.max_speech_len, self.block_cfg.head_dim, self.block_cfg.rope_base,
                                self.cls_token_num, zero_prefix=False, device=device)
            self._rope[device] = table
        return table

    # ------------------------------------------------------------------ caches
    def setup_caches(self, batch_size: int, max_seq_len: int, dtype: torch.dtype | None = None,
                     device: torch.device | str | None = None) -> None:
        """A static KV cache of ``batch_size`` rows and ``max_seq_len`` slots in every branch block."""
        ref = self.head.weight
        dtype, device = dtype or ref.dtype, device or ref.device
        for layer in self.layers:
            layer.attention.kv_cache = KVCache(batch_size, max_seq_len, self.block_cfg.n_kv_head,
                                               self.block_cfg.head_dim, dtype, device)
        self._key_valid = torch.ones(batch_size, max_seq_len, dtype=torch.bool, device=device)

    def clear_caches(self) -> None:
        for layer in self.layers:
            layer.attention.kv_cache = None
        self._key_valid = None

    @property
    def cache_shape(self) -> tuple[int, int]:
        """``(rows, slots)`` of the KV cache; ``(0, 0)`` when none is set up."""
        return (0, 0) if self._key_valid is None else (self._key_valid.shape[0], self._key_valid.shape[1])

    def keep_cache_rows(self, rows: torch.Tensor) -> None:
        """Keep only cache rows ``rows [R']`` (long, in the new order): a finished utterance costs nothing more."""
        for layer in self.layers:
            cache = layer.attention.kv_cache
            cache.k, cache.v = cache.k.index_select(0, rows), cache.v.index_select(0, rows)
        self._key_valid = self._key_valid.index_select(0, rows)

    # ------------------------------------------------------------------ forward
    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Speech ids ``[B, N]`` in ``[0, K]`` -> backbone inputs ``[B, N, backbone.dim]``."""
        return self.speech_embedding(codes)

    def forward(self, hidden: torch.Tensor, input_pos: torch.Tensor | None = None, *,
                caption_mask: torch.Tensor | None = None, logits_to_keep: int | None = None) -> torch.Tensor:
        """Branch and head on tapped backbone states.

        Args:
            hidden: ``[B, T, backbone.dim]`` tapped states of positions ``input_pos`` (or ``0 .. T-1``).
            input_pos: ``[T]`` cache slots; ``None`` runs cache-free from position 0.
            caption_mask: ``[B, L]`` validity of the caption slots ``0 .. L-1`` (remembered by a cached call).
            logits_to_keep: compute the head on the last ``n`` positions only.

        Returns:
            ``[B, T', K + 1]`` float32 logits.
        """
        B, T, _ = hidden.shape
        rot = select_rope(self.rope_table(hidden.device), input_pos, T)
        mask = self._mask(B, T, input_pos, caption_mask, hidden.device)
        x = hidden if self.in_proj is None else self.in_proj(hidden)
        for layer in self.layers:
            x = layer(x, rot, mask, input_pos)
        if logits_to_keep is not None:
            x = x[:, -logits_to_keep:]
        logits = self.head(self.norm(x))
        return logits if logits.dtype == torch.float32 else logits.float()

    def _mask(self, B: int, T: int, input_pos: torch.Tensor | None, caption_mask: torch.Tensor | None,
              device: torch.device) -> torch.Tensor | None:
        if input_pos is None:
            if caption_mask is None:
                return None  # plain causal
            key_valid = torch.ones(B, T, dtype=torch.bool, device=device)
            key_valid[:, : caption_mask.shape[1]] = caption_mask.bool()
            return attention_mask(torch.arange(T, device=device), key_valid)
        rows, _ = self.cache_shape
        if rows != B:
            raise InputError(f"speech branch: batch of {B} rows but the cache holds {rows}",
                             "call setup_caches with this batch")
        if caption_mask is not None:
            self._key_valid[:, : caption_mask.shape[1]] = caption_mask.to(device).bool()
        return attention_mask(input_pos, self._key_valid)
