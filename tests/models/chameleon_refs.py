"""Test helpers: tiny configs, random weights, transformers' Chameleon, and an independent native reference.

``native_logits`` re-implements Chameleon's original (Meta) forward pass directly on ``consolidated.pth``-layout
tensors in float64, including model-parallel shards computed the way the original runs them (each shard its own
heads, its own QK-norm vector, partial outputs summed). It shares no code with ``aromni.models`` and uses
complex-number interleaved RoPE, so agreement with it checks the layout conversions independently of HF.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from aromni.models import Decoder, DecoderConfig

TINY_VQ = {"embed_dim": 8, "num_embeddings": 16, "latent_channels": 32, "resolution": 32, "in_channels": 3,
           "base_channels": 32, "channel_multiplier": [1], "num_res_blocks": 1, "attn_resolutions": []}


def tiny_config(**kw) -> DecoderConfig:
    base = dict(vocab_size=96, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, max_seq_len=64)
    return DecoderConfig(**{**base, **kw})


def randomize_(module: torch.nn.Module, seed: int, *, shared_qk_norm: bool = False) -> torch.nn.Module:
    """Fill every parameter with random values (norm gains around 1), so no layout error can hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "vqmodel" in name:
                continue
            gain = name.endswith("weight") and ("norm" in name or "layernorm" in name)
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * (0.3 if gain else 0.2)
                    + (1.0 if gain else 0.0))
            if shared_qk_norm and ("q_norm" in name or "k_norm" in name) and p.dim() == 2:
                p.copy_(p[:1].expand_as(p))
    return module


def random_decoder(cfg: DecoderConfig, seed: int = 0, *, shared_qk_norm: bool = False) -> Decoder:
    return randomize_(Decoder(cfg), seed, shared_qk_norm=shared_qk_norm).eval()


def hf_config(cfg: DecoderConfig, **extra):
    from transformers import ChameleonConfig

    return ChameleonConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta}, swin_norm=cfg.swin_norm,
        vq_config=TINY_VQ, vocabulary_map=extra.pop("vocabulary_map", {"<image>": 5, "IMGIMGA": 7}),
        bos_token_id=0, eos_token_id=2, pad_token_id=1, **extra)


def hf_model(cfg: DecoderConfig, seed: int = 0, *, shared_qk_norm: bool = False, attn: str = "eager", **config):
    from transformers import ChameleonForConditionalGeneration

    model = ChameleonForConditionalGeneration(hf_config(cfg, **config))
    model.config._attn_implementation = attn
    return randomize_(model, seed, shared_qk_norm=shared_qk_norm).eval()


@torch.no_grad()
def hf_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    """Body + lm_head, before ForConditionalGeneration masks the image-token logits."""
    return model.lm_head(model.model(input_ids=tokens).last_hidden_state).float()


# ------------------------------------------------------------------------------------------ Meta layout by hand
def unpermute_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """HF (half-split) -> Meta (interleaved) rows, the formula of reference spec §D.2 "Inverse"."""
    d1, d2 = w.shape
    return w.view(n_heads, 2, d1 // n_heads // 2, d2).transpose(1, 2).reshape(d1, d2)


def unpermute_norm(v: torch.Tensor) -> torch.Tensor:
    """HF per-head norm row -> Meta ``[head_dim]`` vector (§D.2: ``view(2, D/2).t().reshape(-1)``)."""
    return v.reshape(2, -1).t().reshape(-1)


def meta_state_from_hf(sd: Mapping[str, torch.Tensor], cfg: DecoderConfig) -> dict[str, torch.Tensor]:
    """A single-shard ``consolidated.pth`` dict written by hand from an HF-upstream state dict."""
    out = {"tok_embeddings.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"],
           "output.weight": sd["lm_head.weight"]}
    for i in range(cfg.n_layers):
        p, m = f"model.layers.{i}.", f"layers.{i}."
        out[m + "attention.wq.weight"] = unpermute_rows(sd[p + "self_attn.q_proj.weight"], cfg.n_heads)
        out[m + "attention.wk.weight"] = unpermute_rows(sd[p + "self_attn.k_proj.weight"], cfg.n_kv_heads)
        out[m + "attention.wv.weight"] = sd[p + "self_attn.v_proj.weight"]
        out[m + "attention.wo.weight"] = sd[p + "self_attn.o_proj.weight"]
        for hf_n, meta_n in (("q_norm", "q_normalization"), ("k_norm", "k_normalization")):
            for a in ("weight", "bias"):
                out[m + f"attention.{meta_n}.{a}"] = unpermute_norm(sd[p + f"self_attn.{hf_n}.{a}"][0])
        out[m + "feed_forward.w1.weight"] = sd[p + "mlp.gate_proj.weight"]
        out[m + "feed_forward.w3.weight"] = sd[p + "mlp.up_proj.weight"]
        out[m + "feed_forward.w2.weight"] = sd[p + "mlp.down_proj.weight"]
        out[m + "attention_norm.weight"] = sd[p + "input_layernorm.weight"]
        out[m + "ffn_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
    out = {k: v.clone().contiguous() for k, v in out.items()}
    out["rope.freqs"] = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim))
    return out


def hf_anole_state_from_meta(meta: Mapping[str, torch.Tensor], cfg: DecoderConfig) -> dict[str, torch.Tensor]:
    """Anole/AR-Omni HF layout = Meta tensors under HF names (reference spec §D.3: pure key renaming)."""
    out = {"model.embed_tokens.weight": meta["tok_embeddings.weight"], "model.norm.weight": meta["norm.weight"],
           "lm_head.weight": meta["output.weight"]}
    names = {"attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj", "attention.wv": "self_attn.v_proj",
             "attention.wo": "self_attn.o_proj", "attention.q_normalization": "self_attn.q_norm",
             "attention.k_normalization": "self_attn.k_norm", "feed_forward.w1": "mlp.gate_proj",
             "feed_forward.w3": "mlp.up_proj", "feed_forward.w2": "mlp.down_proj",
             "attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    for i in range(cfg.n_layers):
        for meta_n, hf_n in names.items():
            for a in ("weight", "bias"):
                k = f"layers.{i}.{meta_n}.{a}"
                if k in meta:
                    out[f"model.layers.{i}.{hf_n}.{a}"] = meta[k]
    return {k: v.clone().contiguous() for k, v in out.items()}


def split_meta(meta: Mapping[str, torch.Tensor], num_shards: int) -> list[dict[str, torch.Tensor]]:
    """Model-parallel shards the way the original stores them (wq/wk/wv/w1/w3/output rows, wo/w2/embedding
    columns, norms replicated). QK-norm vectors must be given per shard by the caller afterwards."""
    shards: list[dict[str, torch.Tensor]] = [{} for _ in range(num_shards)]
    for k, v in meta.items():
        if k.endswith(("wq.weight", "wk.weight", "wv.weight", "w1.weight", "w3.weight", "output.weight")):
            parts = v.chunk(num_shards, 0)
        elif k.endswith(("wo.weight", "w2.weight", "tok_embeddings.weight")):
            parts = v.chunk(num_shards, 1)
        else:
            parts = [v] * num_shards
        for s, part in zip(shards, parts):
            s[k] = part.clone().contiguous()
    return shards


# ------------------------------------------------------------------------------------------ native reference
def _rope_interleaved(x: torch.Tensor, theta: float) -> torch.Tensor:
    """``x [B, T, H, D]`` rotated by complex multiplication of pairs (2i, 2i+1) (original LLaMA/Chameleon)."""
    B, T, H, D = x.shape
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    angles = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    rot = torch.polar(torch.ones_like(angles), angles)  # [T, D/2]
    xc = torch.view_as_complex(x.reshape(B, T, H, D // 2, 2).contiguous())
    return torch.view_as_real(xc * rot[None, :, None, :]).reshape(B, T, H, D)


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


@torch.no_grad()
def native_logits(shards: Sequence[Mapping[str, torch.Tensor]], params: Mapping, tokens: torch.Tensor) -> torch.Tensor:
    """Float64 logits ``[B, T, V]`` of the original Chameleon forward on Meta-layout shards."""
    S = len(shards)
    sd = [{k: v.double() for k, v in s.items() if isinstance(v, torch.Tensor)} for s in shards]
    n_layers, H, D = params["n_layers"], params["n_heads"] // S, params["dim"] // params["n_heads"]
    Hkv = (params.get("n_kv_heads") or params["n_heads"]) // S
    eps, theta, swin = params.get("norm_eps", 1e-5), params.get("rope_theta", 1e4), params.get("swin_norm", False)
    B, T = tokens.shape
    x = torch.cat([s["tok_embeddings.weight"][tokens] for s in sd], dim=-1)  # embedding split by width
    causal = torch.ones(T, T, dtype=torch.bool).tril()

    def attention(i: int, h: torch.Tensor) -> torch.Tensor:
        out = 0
        for s in sd:  # each model-parallel rank: its own heads, its own QK-norm vector; partial wo outputs summed
            p = f"layers.{i}.attention."
            q = (h @ s[p + "wq.weight"].T).view(B, T, H, D)
            k = (h @ s[p + "wk.weight"].T).view(B, T, Hkv, D)
            v = (h @ s[p + "wv.weight"].T).view(B, T, Hkv, D)
            if p + "q_normalization.weight" in s:
                q = F.layer_norm(q, (D,), s[p + "q_normalization.weight"], s[p + "q_normalization.bias"], 1e-5)
                k = F.layer_norm(k, (D,), s[p + "k_normalization.weight"], s[p + "k_normalization.bias"], 1e-5)
            q, k = _rope_interleaved(q, theta), _rope_interleaved(k, theta)
            k, v = k.repeat_interleave(H // Hkv, dim=2), v.repeat_interleave(H // Hkv, dim=2)
            scores = torch.einsum("bthd,bshd->bhts", q, k) / D ** 0.5
            probs = scores.masked_fill(~causal, float("-inf")).softmax(-1)
            y = torch.einsum("bhts,bshd->bthd", probs, v).reshape(B, T, H * D)
            out = out + y @ s[p + "wo.weight"].T
        return out

    def ffn(i: int, h: torch.Tensor) -> torch.Tensor:
        p = f"layers.{i}.feed_forward."
        return sum((F.silu(h @ s[p + "w1.weight"].T) * (h @ s[p + "w3.weight"].T)) @ s[p + "w2.weight"].T for s in sd)

    for i in range(n_layers):
        an, fn = sd[0][f"layers.{i}.attention_norm.weight"], sd[0][f"layers.{i}.ffn_norm.weight"]
        if swin:
            h = x + _rms(attention(i, x), an, eps)
            x = h + _rms(ffn(i, h), fn, eps)
        else:
            h = x + attention(i, _rms(x, an, eps))
            x = h + ffn(i, _rms(h, fn, eps))
    x = _rms(x, sd[0]["norm.weight"], eps)
    return torch.cat([x @ s["output.weight"].T for s in sd], dim=-1)


def meta_params(cfg: DecoderConfig, **extra) -> dict:
    """A ``params.json`` dict (nested "model") as the original release writes it."""
    base = int(8 * cfg.dim / 3)  # SwiGLU width rule: multiple_of * ceil(int(mult * base) / multiple_of)
    mult = None if base <= cfg.ffn_dim else cfg.ffn_dim / base
    model = {"dim": cfg.dim, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "n_kv_heads": cfg.n_kv_heads,
             "vocab_size": cfg.vocab_size, "multiple_of": cfg.ffn_dim, "ffn_dim_multiplier": mult,
             "norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta, "qk_normalization": cfg.qk_norm,
             "swin_norm": cfg.swin_norm}
    return {"model": {**model, **extra}}
