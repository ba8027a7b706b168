"""Meta-native Chameleon checkpoints (the layout of the original release, Anole and AR-Omni ``models/7b``).

A model directory holds ``params.json`` (architecture in a nested ``"model"`` dict), optionally
``consolidate_params.json`` (merged on top, e.g. ``model_parallel_size``) and the weights as ``consolidated.pth``
or one ``consolidated.NN.pth`` per model-parallel shard. The root of a release (``models/7b/...`` plus
``tokenizer/...``) is accepted too. Tensors are loaded with ``torch.load(weights_only=True, mmap=True)``.

Layout (reference spec §D.1): q/k rows use interleaved RoPE pairs; ``q_normalization``/``k_normalization`` are one
``[head_dim]`` LayerNorm per shard shared by that shard's heads; ``rope.freqs`` is ignored. Shards split
``wq/wk/wv/w1/w3/output`` along dim 0, ``wo/w2/tok_embeddings`` along dim 1, and replicate the norms.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.models.checkpoint.aromni_format import build_from_state
from aromni.models.checkpoint.layouts import META_IGNORED, meta_shapes, meta_to_ours, ours_to_meta, rope_freqs
from aromni.models.checkpoint.tensor_files import check_floating, write_pth
from aromni.models.config import DecoderConfig, ffn_hidden_dim
from aromni.models.decoder import Decoder
from aromni.utils.io import JSONValue, atomic_write_json, read_json
from aromni.utils.safe_load import load_pth

PARAMS = "params.json"
CONSOLIDATE = "consolidate_params.json"
_SHARD = re.compile(r"consolidated\.(\d+)\.pth")


def find_model_dir(path: Path) -> Path | None:
    """The directory holding ``params.json``: ``path`` itself or, for a release root, ``models/<size>/``."""
    if (path / PARAMS).is_file():
        return path
    models = path / "models"
    if models.is_dir():
        candidates = sorted(p for p in models.iterdir() if (p / PARAMS).is_file())
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            if (models / "7b" / PARAMS).is_file():
                return models / "7b"
            raise CheckpointError(f"{path}: several models under models/ ({', '.join(p.name for p in candidates)})",
                                  "point at one of them, e.g. models/7b")
    return None


def read_params(model_dir: Path) -> dict[str, JSONValue]:
    """``{**params, **params["model"], **consolidate_params}`` (the merge order of Chameleon's loader)."""
    try:
        params = read_json(model_dir / PARAMS)
        consolidate = read_json(model_dir / CONSOLIDATE) if (model_dir / CONSOLIDATE).is_file() else {}
    except InputError as e:
        raise CheckpointError(e.problem, "a Meta checkpoint needs a valid params.json next to consolidated.pth") from None
    if not isinstance(params, dict) or not isinstance(consolidate, dict):
        raise CheckpointError(f"{model_dir / PARAMS}: not a JSON object", "restore the original params.json")
    nested = params.get("model", {})
    return {**params, **(nested if isinstance(nested, dict) else {}), **consolidate}


def params_to_config(merged: dict[str, JSONValue], model_dir: Path, has_qk_norm: bool) -> DecoderConfig:
    missing = [k for k in ("dim", "n_layers", "n_heads", "vocab_size") if merged.get(k) is None]
    if missing:
        raise CheckpointError(f"{model_dir / PARAMS}: missing {', '.join(missing)}",
                              "params.json must hold the architecture (in its \"model\" dict)")
    try:
        dim = int(merged["dim"])
        mult = merged.get("ffn_dim_multiplier")
        return DecoderConfig(
            vocab_size=int(merged["vocab_size"]), dim=dim, n_layers=int(merged["n_layers"]),
            n_heads=int(merged["n_heads"]), n_kv_heads=merged.get("n_kv_heads"),
            ffn_dim=ffn_hidden_dim(dim, int(merged.get("multiple_of") or 256), None if mult is None else float(mult)),
            multiple_of=int(merged.get("multiple_of") or 256), norm_eps=float(merged.get("norm_eps", 1e-5)),
            rope_theta=float(merged.get("rope_theta") or 10000.0),
            qk_norm=bool(merged.get("qk_normalization", has_qk_norm)), swin_norm=bool(merged.get("swin_norm", False)),
            max_seq_len=int(merged.get("max_seq_len") or 4096))
    except (ConfigError, TypeError, ValueError) as e:
        raise CheckpointError(f"{model_dir / PARAMS}: {getattr(e, 'problem', e)}", "fix params.json") from None


def shard_files(model_dir: Path) -> list[Path]:
    single = model_dir / "consolidated.pth"
    numbered = sorted((p for p in model_dir.glob("consolidated.*.pth") if _SHARD.fullmatch(p.name)),
                      key=lambda p: int(_SHARD.fullmatch(p.name).group(1)))
    if single.is_file():
        return [single]
    if not numbered:
        raise CheckpointError(f"{model_dir}: no consolidated.pth or consolidated.NN.pth",
                              "a Meta checkpoint holds params.json and its consolidated weights")
    want = [f"consolidated.{i:02d}.pth" for i in range(len(numbered))]
    if [p.name for p in numbered] != want:
        raise CheckpointError(f"{model_dir}: shard files {[p.name for p in numbered]} are not numbered 00..NN",
                              "a model-parallel shard is missing; download it again")
    return numbered


def load_meta(path: Path, *, dtype: torch.dtype | None = None, device: torch.device | str = "cpu") -> Decoder:
    """Load a Meta-native checkpoint (model directory or release root), any number of shards."""
    model_dir = find_model_dir(path)
    if model_dir is None:
        raise CheckpointError(f"{path}: no params.json (nor models/<size>/params.json)",
                              "a Meta checkpoint directory holds params.json next to consolidated.pth")
    merged = read_params(model_dir)
    files = shard_files(model_dir)
    shards = [load_pth(f) for f in files]
    has_qk = any(k.endswith("q_normalization.weight") for k in shards[0])
    cfg = params_to_config(merged, model_dir, has_qk)
    mp = merged.get("model_parallel_size")
    if mp is not None and int(mp) != len(shards):
        raise CheckpointError(f"{model_dir}: model_parallel_size is {mp} but {len(shards)} consolidated file(s) exist",
                              "a model-parallel shard is missing; download it again")
    expected = meta_shapes(cfg, len(shards))
    for f, shard in zip(files, shards):
        _check_shard(f, shard, expected)
    state = meta_to_ours(shards, cfg, dtype=dtype, source=str(model_dir))
    return build_from_state(cfg, state, dtype=dtype, device=device, source=str(model_dir))


def _check_shard(f: Path, shard: dict[str, JSONValue], expected: dict[str, tuple[int, ...]]) -> None:
    for key, shape in expected.items():
        t = shard.get(key)
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{f}: tensor {key!r} is missing",
                                  "params.json does not match the weights (n_layers, qk_normalization?) "
                                  "or the file is incomplete")
        if tuple(t.shape) != shape:
            raise CheckpointError(f"{f}: {key} has shape {tuple(t.shape)}, params.json implies {shape}",
                                  "params.json does not match the weights; restore the original params.json")
        check_floating(key, t.dtype, str(f))
    unexpected = sorted(set(shard) - set(expected) - set(META_IGNORED))
    if unexpected:
        raise CheckpointError(f"{f}: unexpected tensor {unexpected[0]!r}"
                              + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""),
                              "params.json does not match the weights (n_layers, qk_normalization?)")


def meta_params(cfg: DecoderConfig) -> dict[str, JSONValue]:
    """``params.json`` for ``cfg``; ``multiple_of`` / ``ffn_dim_multiplier`` are chosen to reproduce ``ffn_dim``."""
    if cfg.qk_norm_eps != 1e-5:
        raise CheckpointError(f"qk_norm_eps {cfg.qk_norm_eps} cannot be stored in a Meta checkpoint (fixed at 1e-5)",
                              "save in the aromni format")
    multiple_of, mult = _ffn_params(cfg)
    model = {"dim": cfg.dim, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "n_kv_heads": cfg.n_kv_heads,
             "vocab_size": cfg.vocab_size, "multiple_of": multiple_of, "ffn_dim_multiplier": mult,
             "norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta, "qk_normalization": cfg.qk_norm,
             "swin_norm": cfg.swin_norm, "max_seq_len": cfg.max_seq_len}
    return {"model": model}


def _ffn_params(cfg: DecoderConfig) -> tuple[int, float | None]:
    for multiple_of, mult in ((cfg.multiple_of, None), (256, None)):
        if ffn_hidden_dim(cfg.dim, multiple_of, mult) == cfg.ffn_dim:
            return multiple_of, mult
    base = int(2 * 4 * cfg.dim / 3)
    # multiple_of = ffn_dim rounds any hidden width in (0, ffn_dim] up to exactly ffn_dim.
    mult = None if base <= cfg.ffn_dim else cfg.ffn_dim / base
    assert ffn_hidden_dim(cfg.dim, cfg.ffn_dim, mult) == cfg.ffn_dim
    return cfg.ffn_dim, mult


def save_meta(decoder: Decoder, path: str | Path, *, num_shards: int = 1, dtype: torch.dtype | None = None) -> None:
    """Write ``decoder`` as a Meta-native model directory (``params.json``, ``consolidate_params.json`` and
    ``consolidated.pth``, or ``consolidated.NN.pth`` per shard when ``num_shards > 1``).

    A model with tied embeddings is written with ``output.weight`` as a copy (the layout has no tying flag).
    """
    cfg = decoder.cfg
    path = Path(path)
    params = meta_params(cfg)
    shards = ours_to_meta(decoder.state_dict(), cfg, num_shards, dtype=dtype)
    path.mkdir(parents=True, exist_ok=True)
    for i, shard in enumerate(shards):
        shard["rope.freqs"] = rope_freqs(cfg)
        name = "consolidated.pth" if num_shards == 1 else f"consolidated.{i:02d}.pth"
        write_pth(shard, path / name)
    atomic_write_json(path / PARAMS, params)
    atomic_write_json(path / CONSOLIDATE, {"model_parallel_size": num_shards})


def meta_num_shards(path: Path) -> int:
    """Number of model-parallel shards of the Meta checkpoint at ``path``."""
    model_dir = find_model_dir(path)
    return 1 if model_dir is None else len(shard_files(model_dir))
