"""Pure tensor transforms between our weight layout and the Meta-native / Hugging Face key layouts.

No file I/O here. Conventions (see ``docs/models.md``):

* **ours**: fused ``attn.qkv`` (q, k, v rows), q/k rows in the half-split RoPE convention, per-head QK-norm
  ``[H, D]``, fused ``mlp.gate_up`` (gate, up).
* **hf** (transformers upstream, "HFU"): separate ``q_proj/k_proj/v_proj``, q/k rows half-split (Meta's rows
  permuted per head), ``q_norm/k_norm`` ``[H, D]`` already permuted.
* **hf-anole** (the transformers copy vendored in Anole / AR-Omni, "HFV"): HF key names but q/k rows and the
  ``[D]`` QK-norm vectors in Meta's interleaved order (de-interleaved at run time by that modeling code).
* **meta** (``consolidated.pth``): interleaved q/k rows, one ``[D]`` QK-norm per model-parallel shard.

Interleaved RoPE rotates pairs ``(2i, 2i+1)`` of a head; half-split rotates ``(i, i + D/2)``. Moving each head's
even rows first and odd rows second turns one into the other exactly (no arithmetic, so bit-exact).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import torch

from aromni.errors import CheckpointError
from aromni.models.config import DecoderConfig

Getter = Callable[[str], torch.Tensor]


# ---------------------------------------------------------------------------------------------- permutations
def interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder the rows of ``w [n_heads*D, ...]`` (or a ``[n_heads*D]`` vector) from interleaved to half-split."""
    rows = w.shape[0]
    d = rows // n_heads
    return w.reshape(n_heads, d // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of :func:`interleaved_to_half`."""
    rows = w.shape[0]
    d = rows // n_heads
    return w.reshape(n_heads, 2, d // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def expand_shared_norm(v: torch.Tensor, n_heads: int, *, interleaved: bool) -> torch.Tensor:
    """A QK-norm vector ``[D]`` shared by ``n_heads`` heads -> our per-head ``[n_heads, D]`` (half-split order)."""
    if interleaved:
        v = interleaved_to_half(v, 1)
    return v.reshape(1, -1).expand(n_heads, -1).contiguous()


def shared_norm(w: torch.Tensor, groups: int, what: str) -> torch.Tensor:
    """Our per-head norm ``[H, D]`` -> ``[groups, D]`` (one vector per group of ``H/groups`` heads), or raise.

    Meta and Anole store one QK-norm vector per model-parallel shard; a model whose heads within a shard carry
    different vectors cannot be written in those layouts without changing its output.
    """
    h, _ = w.shape
    grouped = w.reshape(groups, h // groups, -1)
    if not bool((grouped == grouped[:, :1]).all()):
        raise CheckpointError(
            f"{what}: QK-norm weights differ between heads, which this layout cannot store "
            f"(it keeps one vector per model-parallel shard, here {groups})",
            "save in the 'hf' or 'aromni' format, or as 'meta' with as many shards as there are distinct groups")
    return grouped[:, 0]


# ---------------------------------------------------------------------------------------------- HF layouts
HF_LAYER = "model.layers.{i}."


def hf_shapes(cfg: DecoderConfig, *, interleaved: bool) -> dict[str, tuple[int, ...]]:
    """Every decoder key of an HF Chameleon checkpoint for ``cfg`` with its shape (no ``model.vqmodel.*``)."""
    d, H, Hkv, D, F, V = cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim, cfg.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (V, d), "model.norm.weight": (d,)}
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (V, d)
    for i in range(cfg.n_layers):
        p = HF_LAYER.format(i=i)
        shapes |= {p + "self_attn.q_proj.weight": (H * D, d), p + "self_attn.k_proj.weight": (Hkv * D, d),
                   p + "self_attn.v_proj.weight": (Hkv * D, d), p + "self_attn.o_proj.weight": (d, H * D),
                   p + "mlp.gate_proj.weight": (F, d), p + "mlp.up_proj.weight": (F, d),
                   p + "mlp.down_proj.weight": (d, F),
                   p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,)}
        if cfg.qk_norm:
            for name, heads in (("q_norm", H), ("k_norm", Hkv)):
                for a in ("weight", "bias"):
                    shapes[p + f"self_attn.{name}.{a}"] = (D,) if interleaved else (heads, D)
    return shapes


def hf_to_ours(get: Getter, cfg: DecoderConfig, *, interleaved: bool,
               dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Build our state dict from HF keys read through ``get`` (lazily, one tensor at a time).

    ``interleaved=True`` reads the Anole/AR-Omni layout (unpermuted q/k, ``[D]`` QK-norm).
    """
    cast = _caster(dtype)
    out: dict[str, torch.Tensor] = {"embed.weight": cast(get("model.embed_tokens.weight")),
                                    "norm.weight": cast(get("model.norm.weight"))}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = cast(get("lm_head.weight"))
    H, Hkv = cfg.n_heads, cfg.n_kv_heads
    for i in range(cfg.n_layers):
        p, o = HF_LAYER.format(i=i), f"layers.{i}."
        q, k = get(p + "self_attn.q_proj.weight"), get(p + "self_attn.k_proj.weight")
        if interleaved:
            q, k = interleaved_to_half(q, H), interleaved_to_half(k, Hkv)
        out[o + "attn.qkv.weight"] = _cat([q, k, get(p + "self_attn.v_proj.weight")], dtype)
        out[o + "attn.o_proj.weight"] = cast(get(p + "self_attn.o_proj.weight"))
        out[o + "mlp.gate_up.weight"] = _cat([get(p + "mlp.gate_proj.weight"), get(p + "mlp.up_proj.weight")], dtype)
        out[o + "mlp.down.weight"] = cast(get(p + "mlp.down_proj.weight"))
        out[o + "attn_norm.weight"] = cast(get(p + "input_layernorm.weight"))
        out[o + "mlp_norm.weight"] = cast(get(p + "post_attention_layernorm.weight"))
        if cfg.qk_norm:
            for name, heads in (("q_norm", H), ("k_norm", Hkv)):
                for a in ("weight", "bias"):
                    t = get(p + f"self_attn.{name}.{a}")
                    if interleaved:
                        t = expand_shared_norm(_expect(t, (cfg.head_dim,), p + f"self_attn.{name}.{a}"), heads,
                                               interleaved=True)
                    out[o + f"attn.{name}.{a}"] = cast(t)
    return out


def ours_to_hf(state: Mapping[str, torch.Tensor], cfg: DecoderConfig, *, interleaved: bool
               ) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(hf_key, tensor)`` for our ``state``; tensors are views where possible (no copies)."""
    yield "model.embed_tokens.weight", state["embed.weight"]
    H, Hkv, D, F = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim
    for i in range(cfg.n_layers):
        p, o = HF_LAYER.format(i=i), f"layers.{i}."
        q, k, v = state[o + "attn.qkv.weight"].split([H * D, Hkv * D, Hkv * D])
        if interleaved:
            q, k = half_to_interleaved(q, H), half_to_interleaved(k, Hkv)
        yield p + "self_attn.q_proj.weight", q
        yield p + "self_attn.k_proj.weight", k
        yield p + "self_attn.v_proj.weight", v
        yield p + "self_attn.o_proj.weight", state[o + "attn.o_proj.weight"]
        if cfg.qk_norm:
            for name in ("q_norm", "k_norm"):
                for a in ("weight", "bias"):
                    t = state[o + f"attn.{name}.{a}"]
                    if interleaved:
                        t = half_to_interleaved(shared_norm(t, 1, f"{o}attn.{name}.{a}")[0], 1)
                    yield p + f"self_attn.{name}.{a}", t
        gate, up = state[o + "mlp.gate_up.weight"].split([F, F])
        yield p + "mlp.gate_proj.weight", gate
        yield p + "mlp.up_proj.weight", up
        yield p + "mlp.down_proj.weight", state[o + "mlp.down.weight"]
        yield p + "input_layernorm.weight", state[o + "attn_norm.weight"]
        yield p + "post_attention_layernorm.weight", state[o + "mlp_norm.weight"]
    yield "model.norm.weight", state["norm.weight"]
    if not cfg.tie_embeddings:
        yield "lm_head.weight", state["lm_head.weight"]


# ---------------------------------------------------------------------------------------------- Meta layout
#: Keys of ``consolidated.pth`` that hold no decoder weight (LLaMA-style precomputed RoPE frequencies).
META_IGNORED = ("rope.freqs",)


def meta_shapes(cfg: DecoderConfig, num_shards: int = 1) -> dict[str, tuple[int, ...]]:
    """Every key of one Meta ``consolidated`` shard (of ``num_shards``) with its per-shard shape."""
    S = num_shards
    d, H, Hkv, D, F, V = cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim, cfg.vocab_size
    full: dict[str, tuple[int, ...]] = {"tok_embeddings.weight": (V, d), "norm.weight": (d,), "output.weight": (V, d)}
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        full |= {p + "attention.wq.weight": (H * D, d), p + "attention.wk.weight": (Hkv * D, d),
                 p + "attention.wv.weight": (Hkv * D, d), p + "attention.wo.weight": (d, H * D),
                 p + "feed_forward.w1.weight": (F, d), p + "feed_forward.w3.weight": (F, d),
                 p + "feed_forward.w2.weight": (d, F),
                 p + "attention_norm.weight": (d,), p + "ffn_norm.weight": (d,)}
        if cfg.qk_norm:
            full |= {p + f"attention.{n}_normalization.{a}": (D,) for n in "qk" for a in ("weight", "bias")}
    out = {}
    for key, shape in full.items():
        dim = _meta_split_dim(key)
        if dim is not None:
            shape = tuple(n // S if j == dim else n for j, n in enumerate(shape))
        out[key] = shape
    return out


def _meta_split_dim(key: str) -> int | None:
    """Model-parallel split dim of a Meta key (``None``: replicated on every shard)."""
    if key.endswith(("wq.weight", "wk.weight", "wv.weight", "w1.weight", "w3.weight", "output.weight")):
        return 0
    if key.endswith(("wo.weight", "w2.weight", "tok_embeddings.weight")):
        return 1  # row-parallel inputs; the embedding is split along its width (ParallelEmbedding)
    return None


def meta_to_ours(shards: Sequence[Mapping[str, torch.Tensor]], cfg: DecoderConfig,
                 dtype: torch.dtype | None = None, source: str = "consolidated.pth") -> dict[str, torch.Tensor]:
    """Build our state dict from one or more model-parallel shards of a Meta ``consolidated`` checkpoint."""
    S = len(shards)
    H, Hkv = cfg.n_heads, cfg.n_kv_heads
    if H % S or Hkv % S:
        raise CheckpointError(f"{source}: {S} shards do not divide {H} query / {Hkv} key-value heads",
                              "params.json and the consolidated.NN.pth files come from different models")
    cast = _caster(dtype)

    def get(key: str) -> torch.Tensor:
        parts = []
        for s, shard in enumerate(shards):
            if key not in shard:
                raise CheckpointError(f"{source}: shard {s} has no tensor {key!r}",
                                      "the checkpoint is incomplete or not a Chameleon consolidated.pth")
            parts.append(shard[key])
        dim = _meta_split_dim(key)
        return parts[0] if S == 1 or dim is None else torch.cat(parts, dim=dim)

    out = {"embed.weight": cast(get("tok_embeddings.weight")), "norm.weight": cast(get("norm.weight")),
           "lm_head.weight": cast(get("output.weight"))}
    for i in range(cfg.n_layers):
        p, o = f"layers.{i}.", f"layers.{i}."
        q = interleaved_to_half(get(p + "attention.wq.weight"), H)
        k = interleaved_to_half(get(p + "attention.wk.weight"), Hkv)
        out[o + "attn.qkv.weight"] = _cat([q, k, get(p + "attention.wv.weight")], dtype)
        out[o + "attn.o_proj.weight"] = cast(get(p + "attention.wo.weight"))
        out[o + "mlp.gate_up.weight"] = _cat([get(p + "feed_forward.w1.weight"), get(p + "feed_forward.w3.weight")],
                                             dtype)
        out[o + "mlp.down.weight"] = cast(get(p + "feed_forward.w2.weight"))
        out[o + "attn_norm.weight"] = cast(get(p + "attention_norm.weight"))
        out[o + "mlp_norm.weight"] = cast(get(p + "ffn_norm.weight"))
        if cfg.qk_norm:
            for meta_name, name, heads in (("q_normalization", "q_norm", H), ("k_normalization", "k_norm", Hkv)):
                for a in ("weight", "bias"):
                    key = p + f"attention.{meta_name}.{a}"
                    # Each shard normalises its own heads with its own vector (no cross-shard reduction).
                    per_shard = [expand_shared_norm(_expect(shard[key], (cfg.head_dim,), key), heads // S,
                                                    interleaved=True)
                                 for shard in shards]
                    out[o + f"attn.{name}.{a}"] = cast(torch.cat(per_shard, dim=0))
    return out


def ours_to_meta(state: Mapping[str, torch.Tensor], cfg: DecoderConfig, num_shards: int = 1,
                 dtype: torch.dtype | None = None) -> list[dict[str, torch.Tensor]]:
    """Split our ``state`` into ``num_shards`` Meta ``consolidated.NN.pth`` dicts (tensors are fresh copies)."""
    S = num_shards
    H, Hkv, D, F = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim
    if S < 1 or H % S or Hkv % S or F % S or cfg.dim % S or cfg.vocab_size % S:
        raise CheckpointError(f"cannot split the model into {S} model-parallel shards",
                              "the shard count must divide heads, key-value heads, dim, ffn_dim and vocab_size")
    shards: list[dict[str, torch.Tensor]] = [{} for _ in range(S)]
    cast = _caster(dtype)

    def put(key: str, t: torch.Tensor) -> None:
        dim = _meta_split_dim(key)
        parts = [t] * S if dim is None else t.chunk(S, dim=dim)
        for shard, part in zip(shards, parts):
            # clone: torch.save would otherwise write the whole underlying storage of a view.
            shard[key] = cast(part).clone(memory_format=torch.contiguous_format)

    put("tok_embeddings.weight", state["embed.weight"])
    for i in range(cfg.n_layers):
        o = p = f"layers.{i}."
        q, k, v = state[o + "attn.qkv.weight"].split([H * D, Hkv * D, Hkv * D])
        put(p + "attention.wq.weight", half_to_interleaved(q, H))
        put(p + "attention.wk.weight", half_to_interleaved(k, Hkv))
        put(p + "attention.wv.weight", v)
        put(p + "attention.wo.weight", state[o + "attn.o_proj.weight"])
        gate, up = state[o + "mlp.gate_up.weight"].split([F, F])
        put(p + "feed_forward.w1.weight", gate)
        put(p + "feed_forward.w3.weight", up)
        put(p + "feed_forward.w2.weight", state[o + "mlp.down.weight"])
        put(p + "attention_norm.weight", state[o + "attn_norm.weight"])
        put(p + "ffn_norm.weight", state[o + "mlp_norm.weight"])
        if cfg.qk_norm:
            for meta_name, name in (("q_normalization", "q_norm"), ("k_normalization", "k_norm")):
                for a in ("weight", "bias"):
                    per_shard = shared_norm(state[o + f"attn.{name}.{a}"], S, f"{o}attn.{name}.{a}")
                    for s in range(S):
                        shards[s][p + f"attention.{meta_name}.{a}"] = cast(half_to_interleaved(per_shard[s], 1)).clone()
    put("norm.weight", state["norm.weight"])
    put("output.weight", state["embed.weight"] if cfg.tie_embeddings else state["lm_head.weight"])
    return shards


def rope_freqs(cfg: DecoderConfig) -> torch.Tensor:
    """LLaMA-style ``rope.freqs [D/2]`` (inverse frequencies), written for loaders that expect the key."""
    return 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim))


# ---------------------------------------------------------------------------------------------- helpers
def _caster(dtype: torch.dtype | None) -> Callable[[torch.Tensor], torch.Tensor]:
    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t
    return cast


def _cat(parts: list[torch.Tensor], dtype: torch.dtype | None) -> torch.Tensor:
    dtypes = {p.dtype for p in parts}
    target = dtype or (parts[0].dtype if len(dtypes) == 1 else torch.float32)
    return torch.cat([p.to(target) for p in parts], dim=0)


def _expect(t: torch.Tensor, shape: tuple[int, ...], key: str) -> torch.Tensor:
    if tuple(t.shape) != shape:
        raise CheckpointError(f"{key} has shape {tuple(t.shape)}, the config implies {shape}",
                              "the weights and the config file come from different models")
    return t
