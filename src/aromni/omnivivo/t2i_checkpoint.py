"""Loading LlamaGen's t2i checkpoints, and saving / loading the backbone in our own format.

Official files (omnivivo.md §1.7) are PyTorch pickles holding the state dict directly or under ``"model"``
(DDP), ``"module"`` (DeepSpeed) or ``"state_dict"``. A checkpoint written by ``train_t2i.py`` also holds
``"optimizer"``, ``"steps"`` and ``"args": argparse.Namespace(...)``. They are read with
``torch.load(weights_only=True)`` only; ``argparse.Namespace`` (a bag of attributes that runs no code) is the
single class allowed besides tensors and plain containers, and only for the duration of the call. A file holding
any other Python object is refused with a :class:`~aromni.errors.CheckpointError`; it is never unpickled.

The architecture is read off the tensor shapes (width, depth, vocabulary, caption prefix and width, FFN width,
KV heads); the head count comes from the matching preset or the file's ``args.gpt_model``, and the image grid
(``block_size``, not stored in the weights) from ``args.image_size / args.downsample_size`` or the caller.

Our format is a directory: ``config.json`` (``{"type": "llamagen-t2i", "config": T2IConfig}``) and
``model.safetensors`` (the backbone's state dict, LlamaGen's key names).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.models.checkpoint.tensor_files import check_state_dict
from aromni.omnivivo.t2i_config import PRESETS, T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone
from aromni.utils.io import JSONValue, atomic_dir, atomic_path, atomic_write_json, read_json
from aromni.utils.safe_load import load_weights_only

TYPE = "llamagen-t2i"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"

#: Wrappers around the state dict, in the order LlamaGen's ``sample_t2i.py`` tries them.
WRAPPERS = ("model", "module", "state_dict")
#: Runtime state an upstream model can carry after ``generate()`` (its KV caches), and LlamaGen's attribute
#: names for the mask and RoPE table should a fork register them as buffers: never weights, dropped on load.
_RUNTIME_KEY = re.compile(r"(^|\.)(kv_cache\.[kv]_cache|causal_mask|freqs_cis)$")
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.attention\.wqkv\.weight$")


# ---------------------------------------------------------------------------------------------- official files
def read_official(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, JSONValue]]:
    """The state dict of an official LlamaGen checkpoint and its training ``args`` (``{}`` when absent).

    Raises:
        CheckpointError: missing or unreadable file, a pickled object other than ``argparse.Namespace``, no
            state dict inside, or non-tensor entries in it.
    """
    path = Path(path)
    # Scoped allow-list: torch.load's global safe list is left as it was once the call returns.
    with torch.serialization.safe_globals([argparse.Namespace]):
        obj = load_weights_only(path, mmap=True)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict",
                              "expected a state dict or {'model': state_dict, ...}")
    args = obj.get("args")
    args_dict = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, type(None)))} \
        if isinstance(args, argparse.Namespace) else {}
    return _unwrap(obj, path), args_dict


def _unwrap(obj: dict[str, object], path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, object] = obj
    for _ in range(3):  # e.g. {"model": {"module": {...}}}
        if any(isinstance(v, torch.Tensor) for v in state.values()):
            break
        inner = next((state[k] for k in WRAPPERS if isinstance(state.get(k), dict)), None)
        if inner is None:
            raise CheckpointError(f"{path}: no state dict found (top-level keys: {sorted(map(str, state))[:8]})",
                                  f"expected the weights directly or under one of {list(WRAPPERS)}")
        state = inner
    for prefix in ("module.", "_orig_mod."):  # a DDP- or torch.compile-wrapped model saved whole
        if state and all(str(k).startswith(prefix) for k in state):
            state = {str(k)[len(prefix):]: v for k, v in state.items()}
    bad = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise CheckpointError(f"{path}: state dict entry {bad[0]!r} is not a tensor", "re-save the model's state_dict()")
    return {k: v for k, v in state.items() if not _RUNTIME_KEY.search(k)}


def infer_config(state: dict[str, torch.Tensor], args: dict[str, JSONValue] | None = None, *,
                 block_size: int | None = None, n_head: int | None = None, source: str = "checkpoint"
                 ) -> T2IConfig:
    """The :class:`T2IConfig` of an official state dict, from its shapes plus ``args`` / the caller.

    Args:
        state: LlamaGen-named tensors.
        args: the training ``args`` stored with the weights (``gpt_model``, ``image_size``, ``downsample_size``).
        block_size: image tokens (256 for ``t2i_XL_stage1_256.pt``, 1024 for ``t2i_XL_stage2_512.pt``).
        n_head: heads, when the width and depth match no preset.
    """
    args = args or {}
    try:
        vocab, dim = state["tok_embeddings.weight"].shape
        cls_token_num, caption_dim = state["cls_embedding.uncond_embedding"].shape
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{source}: not a LlamaGen t2i state dict ({e} is missing or malformed)",
                              "expected tok_embeddings.weight and cls_embedding.uncond_embedding") from None
    n_layer = 1 + max((int(m.group(1)) for k in state if (m := _LAYER_KEY.match(k))), default=-1)
    n_head = n_head or _preset_heads(str(args.get("gpt_model", "")), dim, n_layer)
    if n_head is None:
        raise CheckpointError(f"{source}: dim {dim} with {n_layer} layers matches no preset, so the head count "
                              "is unknown", "pass n_head=")
    head_dim = dim // n_head
    qkv = state.get(f"layers.{n_layer - 1}.attention.wqkv.weight")  # a missing key is reported by the strict load
    n_kv_head = n_head if qkv is None else (qkv.shape[0] // head_dim - n_head) // 2
    block_size = block_size or _args_block_size(args)
    if block_size is None:
        raise CheckpointError(f"{source}: the image grid is not stored in the weights",
                              "pass block_size=256 (256 px, stage 1) or 1024 (512 px, stage 2)")
    try:
        return T2IConfig(dim=int(dim), n_layer=n_layer, n_head=n_head, n_kv_head=int(n_kv_head),
                         vocab_size=int(vocab), cls_token_num=int(cls_token_num), caption_dim=int(caption_dim),
                         block_size=int(block_size))
    except ConfigError as e:
        raise CheckpointError(f"{source}: {e.problem}", e.hint) from None


def _preset_heads(name: str, dim: int, n_layer: int) -> int | None:
    preset = PRESETS.get(name)
    if preset is not None and (preset["dim"], preset["n_layer"]) == (dim, n_layer):
        return int(preset["n_head"])
    for p in PRESETS.values():
        if (p["dim"], p["n_layer"]) == (dim, n_layer):
            return int(p["n_head"])
    return None


def _args_block_size(args: dict[str, JSONValue]) -> int | None:
    size, down = args.get("image_size"), args.get("downsample_size")
    if isinstance(size, int) and isinstance(down, int) and down > 0:
        return (size // down) ** 2
    return None


def load_official(path: str | Path, *, block_size: int | None = None, n_head: int | None = None,
                  dtype: torch.dtype | None = None, device: torch.device | str = "cpu") -> T2IBackbone:
    """Load an official LlamaGen t2i checkpoint (``.pt``) strictly into a :class:`T2IBackbone` in eval mode."""
    state, args = read_official(path)
    cfg = infer_config(state, args, block_size=block_size, n_head=n_head, source=str(path))
    return build_from_state(cfg, state, dtype=dtype, device=device, source=str(path))


# ---------------------------------------------------------------------------------------------- building
def build_from_state(cfg: T2IConfig, state: dict[str, torch.Tensor], *, dtype: torch.dtype | None = None,
                     device: torch.device | str = "cpu", source: str = "checkpoint") -> T2IBackbone:
    """Build the backbone on the meta device and assign ``state`` to it; every key, shape and dtype is checked
    (a :class:`CheckpointError` names the first missing or unexpected key and how many more there are)."""
    with torch.device("meta"):
        model = T2IBackbone(cfg)
    expected = model.state_dict()
    check_state_dict(expected, state, source, keys_hint="the file is not a LlamaGen t2i model of this architecture",
                     shape_hint="the weights and the config come from different models")
    state = {k: v.to(device=device, dtype=dtype or v.dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------- our format
def save_t2i(model: T2IBackbone, path: str | Path, *, dtype: torch.dtype | None = None,
             overwrite: bool = False) -> None:
    """Write ``model`` to directory ``path`` (built in a temporary sibling and moved into place)."""
    state = {k: (v.to(dtype) if dtype is not None else v).detach().contiguous().cpu()
             for k, v in model.state_dict().items()}
    with atomic_dir(path, overwrite=overwrite) as tmp:
        with atomic_path(tmp / WEIGHTS) as weights:
            save_file(state, str(weights), metadata={"type": TYPE})
        atomic_write_json(tmp / CONFIG, {"type": TYPE, "config": model.cfg.to_dict()})


def load_t2i(path: str | Path, *, block_size: int | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu") -> T2IBackbone:
    """Load a backbone saved by :func:`save_t2i` (eval mode); ``block_size`` re-targets it to another image grid
    (the weights do not depend on it, only the RoPE table and the generation length do)."""
    path = Path(path)
    try:
        raw = read_json(path / CONFIG)
    except InputError as e:
        raise CheckpointError(e.problem, f"a {TYPE} checkpoint is a directory with {CONFIG} and {WEIGHTS}") from None
    if not isinstance(raw, dict) or raw.get("type") != TYPE or not isinstance(raw.get("config"), dict):
        raise CheckpointError(f"{path / CONFIG}: not a {TYPE} config", f'expected {{"type": "{TYPE}", "config": {{...}}}}')
    try:
        cfg = T2IConfig.from_dict(raw["config"])
        if block_size is not None:
            cfg = cfg.replace(block_size=block_size)
    except ConfigError as e:
        raise CheckpointError(f"{path / CONFIG}: {e.problem}", e.hint) from None
    try:
        state = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path / WEIGHTS}: unreadable safetensors file ({e})", "save the model again") from None
    return build_from_state(cfg, state, dtype=dtype, device=device, source=str(path))


def load_backbone(path: str | Path, *, block_size: int | None = None, dtype: torch.dtype | None = None,
                  device: torch.device | str = "cpu") -> T2IBackbone:
    """Our directory format or an official ``.pt`` file, whichever ``path`` is."""
    path = Path(path)
    if path.is_dir():
        return load_t2i(path, block_size=block_size, dtype=dtype, device=device)
    return load_official(path, block_size=block_size, dtype=dtype, device=device)
