"""Hugging Face Chameleon checkpoints: upstream transformers ("hf") and the Anole / AR-Omni vendored copy ("hf-anole").

Both are a directory with ``config.json`` (``"model_type": "chameleon"``) and ``model.safetensors`` (or
``model-0000i-of-0000n.safetensors`` shards with ``model.safetensors.index.json``; ``pytorch_model*.bin`` is read
too). Key names are identical; the layouts differ in two places (reference spec §D.2-D.3):

============================  =====================================  ==========================================
                              hf (``ChameleonForConditionalGeneration``)  hf-anole (``ChameleonForCausalLM``)
============================  =====================================  ==========================================
``q_proj`` / ``k_proj`` rows   permuted per head (half-split RoPE)    Meta's interleaved order (permuted at run time)
``q_norm`` / ``k_norm``        ``[n_heads, head_dim]``, permuted      ``[head_dim]`` shared by all heads, interleaved
config                         no QK-norm flag (always on)            ``qk_layernorm``
============================  =====================================  ==========================================

The variant is detected from the rank of a ``q_norm.weight`` tensor. ``model.vqmodel.*`` (the VQGAN image
encoder) is not part of the decoder and is skipped on load; the image-tokenizer loader reads it separately.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.models.checkpoint.aromni_format import build_from_state
from aromni.models.checkpoint.layouts import hf_shapes, hf_to_ours, ours_to_hf
from aromni.models.checkpoint.tensor_files import (
    TensorSource,
    open_pth,
    open_safetensors,
    pth_files,
    safetensors_files,
    write_safetensors,
)
from aromni.models.config import DecoderConfig
from aromni.models.decoder import Decoder
from aromni.utils.config import coerce_value
from aromni.utils.io import JSONValue, atomic_write_json, read_json

HF, HF_ANOLE = "hf", "hf-anole"
CONFIG = "config.json"
#: Keys that belong to other modules or hold recomputable buffers.
IGNORED_PREFIXES = ("model.vqmodel.",)
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
#: Config fields that describe the architecture; everything else (vocabulary_map, vq_config, token ids, ...) is
#: carried over unchanged when converting between the two HF variants.
ARCH_FIELDS = ("architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
               "num_attention_heads", "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps",
               "rope_theta", "rope_parameters", "rope_scaling", "attention_bias", "mlp_bias", "tie_word_embeddings",
               "swin_norm", "qk_layernorm", "model_parallel_size", "torch_dtype", "dtype", "transformers_version")


def read_hf_config(path: Path) -> tuple[DecoderConfig, dict[str, JSONValue]]:
    """Parse ``config.json`` of an HF Chameleon checkpoint into a :class:`DecoderConfig` (and the raw dict)."""
    try:
        raw = read_json(path / CONFIG)
    except InputError as e:
        raise CheckpointError(e.problem, e.hint) from None
    if not isinstance(raw, dict) or raw.get("model_type") != "chameleon":
        raise CheckpointError(f"{path / CONFIG}: model_type is {raw.get('model_type') if isinstance(raw, dict) else None!r},"
                              " not 'chameleon'", "point at a Chameleon / Anole / AR-Omni checkpoint")
    _refuse(raw, "hidden_act", "silu", lambda v: v not in (None, "silu"))
    _refuse(raw, "attention_bias", False, bool)
    _refuse(raw, "mlp_bias", False, bool)
    rope = raw.get("rope_parameters") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if raw.get("rope_scaling") or rope_type not in (None, "default"):
        raise CheckpointError(f"{path / CONFIG}: RoPE scaling ({raw.get('rope_scaling') or rope}) is not supported",
                              "Chameleon checkpoints use plain RoPE; remove the scaling entry")
    try:
        cfg = DecoderConfig(
            vocab_size=_req(raw, "vocab_size", path), dim=_req(raw, "hidden_size", path),
            n_layers=_req(raw, "num_hidden_layers", path), n_heads=_req(raw, "num_attention_heads", path),
            n_kv_heads=raw.get("num_key_value_heads"), ffn_dim=_req(raw, "intermediate_size", path),
            norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
            rope_theta=float(rope.get("rope_theta", raw.get("rope_theta", 10000.0))),
            qk_norm=bool(raw.get("qk_layernorm", True)), swin_norm=bool(raw.get("swin_norm", False)),
            max_seq_len=int(raw.get("max_position_embeddings", 4096)),
            tie_embeddings=bool(raw.get("tie_word_embeddings", False)))
    except ConfigError as e:
        raise CheckpointError(f"{path / CONFIG}: {e.problem}", e.hint) from None
    except (TypeError, ValueError) as e:  # a value that is not a number (int("abc"), float([1]))
        raise CheckpointError(f"{path / CONFIG}: a value is not a number ({e})",
                              "restore the original config.json") from None
    return cfg, raw


def open_hf_weights(path: Path) -> TensorSource:
    files = safetensors_files(path)
    if files is not None:
        return open_safetensors(files, str(path))
    files = pth_files(path)
    if files is not None:
        return open_pth(files, str(path))
    raise CheckpointError(f"{path}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin",
                          "an HF checkpoint directory holds config.json and its weight files")


def detect_hf_variant(src: TensorSource, raw_config: Mapping[str, JSONValue]) -> str:
    """``"hf"`` or ``"hf-anole"`` from the rank of a ``q_norm.weight`` (or the config when QK-norm is off)."""
    for key in src.keys():
        if key.endswith("self_attn.q_norm.weight") and not key.startswith(IGNORED_PREFIXES):
            return HF_ANOLE if len(src.shape(key)) == 1 else HF
    return HF_ANOLE if "qk_layernorm" in raw_config else HF


def load_hf(path: Path, *, dtype: torch.dtype | None = None, device: torch.device | str = "cpu",
            variant: str | None = None) -> Decoder:
    """Load an HF Chameleon checkpoint directory (either variant; detected when ``variant`` is None)."""
    cfg, raw = read_hf_config(path)
    src = open_hf_weights(path)
    variant = variant or detect_hf_variant(src, raw)
    interleaved = variant == HF_ANOLE
    if not interleaved and not cfg.qk_norm:
        raise CheckpointError(f"{path / CONFIG}: qk_layernorm is false but the weights are in the upstream layout",
                              "upstream Chameleon always uses QK-norm; fix config.json")
    check_keys(src, hf_shapes(cfg, interleaved=interleaved), str(path), variant)
    state = hf_to_ours(src.get, cfg, interleaved=interleaved, dtype=dtype)
    return build_from_state(cfg, state, dtype=dtype, device=device, source=str(path))


def check_keys(src: TensorSource, expected: Mapping[str, tuple[int, ...]], label: str, variant: str) -> None:
    """Missing / unexpected keys and wrong shapes -> CheckpointError naming the key, the file and the fix."""
    present = {k for k in src.keys() if not k.startswith(IGNORED_PREFIXES) and not k.endswith(IGNORED_SUFFIXES)}
    missing = [k for k in expected if k not in present]
    if missing:
        raise CheckpointError(f"{label}: tensor {missing[0]!r} is missing"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                              "config.json does not match the weight files, or a shard is missing")
    unexpected = sorted(present - set(expected))
    if unexpected:
        raise CheckpointError(f"{label}: unexpected tensor {unexpected[0]!r}"
                              + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""),
                              "config.json does not match the weight files (layer count, tied embeddings, QK-norm?)")
    for key, shape in expected.items():
        got = src.shape(key)
        if got != shape:
            raise CheckpointError(f"{src.file_of(key)}: {key} has shape {got}, config.json implies {shape} "
                                  f"for the {variant} layout",
                                  "config.json does not match the weights; re-export the checkpoint")
        src.check_floating(key)


def hf_config_dict(cfg: DecoderConfig, *, anole: bool, extra: Mapping[str, JSONValue] | None = None,
                   dtype: torch.dtype | None = None) -> dict[str, JSONValue]:
    """``config.json`` for ``cfg`` in the requested HF variant (``extra`` supplies non-architecture fields)."""
    if cfg.qk_norm_eps != 1e-5:
        raise CheckpointError(f"qk_norm_eps {cfg.qk_norm_eps} cannot be stored in an HF Chameleon config "
                              "(its QK-norm epsilon is fixed at 1e-5)", "save in the aromni format")
    base: dict[str, JSONValue] = {"vocabulary_map": {}, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
    base.update({k: v for k, v in (extra or {}).items() if k not in ARCH_FIELDS})
    arch: dict[str, JSONValue] = {
        "architectures": ["ChameleonForCausalLM" if anole else "ChameleonForConditionalGeneration"],
        "model_type": "chameleon", "vocab_size": cfg.vocab_size, "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads, "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta,
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": cfg.tie_embeddings,
        "swin_norm": cfg.swin_norm, "model_parallel_size": 1}
    if anole:
        arch |= {"qk_layernorm": cfg.qk_norm, "rope_scaling": None}
    if dtype is not None:
        arch["torch_dtype"] = str(dtype).removeprefix("torch.")
    return {**arch, **base}


def save_hf(decoder: Decoder, path: str | Path, *, anole: bool = False, dtype: torch.dtype | None = None,
            extra_config: Mapping[str, JSONValue] | None = None,
            extra_tensors: Iterator[tuple[str, torch.Tensor]] | None = None,
            max_shard_bytes: int | None = 5 * 2**30) -> None:
    """Write ``decoder`` as an HF Chameleon checkpoint (upstream layout, or the Anole layout when ``anole``).

    ``extra_config`` supplies the non-architecture fields (``vocabulary_map``, ``vq_config``, token ids) and
    ``extra_tensors`` extra weights such as ``model.vqmodel.*``; both come from the source checkpoint when
    converting. Without a vocabulary map the config gets an empty one, which transformers accepts.
    """
    cfg = decoder.cfg
    if not cfg.qk_norm and not anole:
        raise CheckpointError("upstream HF Chameleon always applies QK-norm; this model has none",
                              "save it as 'hf-anole', 'meta' or 'aromni'")
    path = Path(path)
    config = hf_config_dict(cfg, anole=anole, extra=extra_config, dtype=dtype or decoder.embed.weight.dtype)
    state = decoder.state_dict()

    def items() -> Iterator[tuple[str, torch.Tensor]]:
        yield from ours_to_hf(state, cfg, interleaved=anole)
        if extra_tensors is not None:
            yield from extra_tensors

    write_safetensors(items(), path, dtype=dtype, max_shard_bytes=max_shard_bytes)
    atomic_write_json(path / CONFIG, config)


def hf_extras(path: Path) -> tuple[dict[str, JSONValue], Iterator[tuple[str, torch.Tensor]]]:
    """Non-architecture config fields and the ``model.vqmodel.*`` tensors of an HF checkpoint (for conversion)."""
    _, raw = read_hf_config(path)
    src = open_hf_weights(path)
    fields = {k: v for k, v in raw.items() if k not in ARCH_FIELDS}
    keys = [k for k in src.keys() if k.startswith(IGNORED_PREFIXES)]
    return fields, ((k, src.get(k)) for k in keys)


def _req(raw: Mapping[str, JSONValue], key: str, path: Path) -> int:
    if raw.get(key) is None:
        raise CheckpointError(f"{path / CONFIG}: missing {key!r}", "the config.json is incomplete")
    return coerce_value(int, raw[key], key)


def _refuse(raw: Mapping[str, JSONValue], key: str, supported: Any, bad) -> None:
    if key in raw and bad(raw[key]):
        raise CheckpointError(f"config.json: {key}={raw[key]!r} is not supported (only {supported!r})",
                              "this is not a Chameleon-architecture checkpoint")
