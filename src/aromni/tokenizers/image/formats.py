"""Official VQGAN files (official-formats.md §B.3, §B.5).

* Meta: ``vqgan.yaml`` (``model.params.{embed_dim, n_embed, ddconfig, lossconfig, ...}``) + ``vqgan.ckpt``
  (a dict whose ``"state_dict"`` holds ``encoder.*``, ``decoder.*``, ``quantize.embedding.weight``,
  ``quant_conv.*``, ``post_quant_conv.*`` and possibly ``loss.*`` training-loss weights, which we skip and count).
* HF Chameleon: ``config.json["vq_config"]`` + safetensors with ``model.vqmodel.*``: encoder, quant_conv,
  codebook and post_quant_conv only. HF conversion drops the decoder, so such a model cannot decode.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from aromni.errors import CheckpointError, ConfigError
from aromni.tokenizers.image.config import VQGANConfig
from aromni.tokenizers.image.vqgan import VQGAN, build
from aromni.utils.io import atomic_path, atomic_write_text, read_json

#: Prefixes of training-only entries in Meta/taming checkpoints (perceptual loss, discriminator, logvar).
IGNORED_PREFIXES = ("loss.",)
#: Where HF Chameleon checkpoints keep the VQ model.
HF_PREFIXES = ("model.vqmodel.", "vqmodel.")


def read_meta_yaml(path: str | Path) -> VQGANConfig:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file", "pass Meta's tokenizer/vqgan.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        params = raw["model"]["params"]
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid YAML ({e})") from None
    except (KeyError, TypeError):
        raise CheckpointError(f"{path}: no model.params mapping", "is this Meta's vqgan.yaml?") from None
    return VQGANConfig.from_meta(params, source=str(path))


def read_torch_checkpoint(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file", "check the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path} holds arbitrary Python objects, which are not loaded for safety ({e})",
                              "re-save it as a plain dict of tensors ({'state_dict': {...}})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({e})", "is the file complete?") from None


def split_meta_state(raw: Any, source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Meta's checkpoint object -> (model tensors, ignored loss/discriminator keys)."""
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: no 'state_dict' of tensors", "expected Meta's vqgan.ckpt layout")
    ignored = sorted(k for k in state if k.startswith(IGNORED_PREFIXES))
    return {k: v for k, v in state.items() if k not in set(ignored)}, ignored


def load_chameleon(yaml_path: str | Path, ckpt_path: str | Path, *, device: torch.device | str = "cpu",
                   dtype: torch.dtype | None = None) -> VQGAN:
    """Meta's ``vqgan.yaml`` + ``vqgan.ckpt`` -> :class:`VQGAN` (strict on model keys)."""
    cfg = read_meta_yaml(yaml_path)
    state, ignored = split_meta_state(read_torch_checkpoint(ckpt_path), str(ckpt_path))
    model = build(cfg, state, with_decoder=True, source=str(ckpt_path), device=device, dtype=dtype)
    model.load_report.update(ignored_keys=len(ignored), ignored_prefixes=sorted({k.split(".")[1] for k in ignored
                                                                                  if k.count(".") >= 1}))
    return model


def save_chameleon(model: VQGAN, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``vqgan.yaml`` + ``vqgan.ckpt`` in Meta's layout (for the official inference code)."""
    import yaml

    if not model.has_decoder:
        raise CheckpointError("this VQGAN has no decoder, Meta's format needs one",
                              "load Meta's vqgan.ckpt or train a full model")
    out = Path(out_dir)
    params = model.cfg.to_meta()
    atomic_write_text(out / "vqgan.yaml", yaml.safe_dump({"model": {"target": "taming.models.vqgan.VQModel",
                                                                    "params": params}}, sort_keys=False))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / "vqgan.ckpt") as tmp:
        torch.save({"state_dict": state}, tmp)
    return out / "vqgan.yaml", out / "vqgan.ckpt"


def _hf_weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map", {})
        names = sorted({f for k, f in weight_map.items() if k.startswith(HF_PREFIXES)})
        return [path / n for n in names]
    return sorted(path.glob("*.safetensors"))


def read_hf_vq_state(path: Path) -> dict[str, torch.Tensor]:
    """Read only the ``model.vqmodel.*`` tensors (the 7B language model weights are never loaded)."""
    from safetensors import SafetensorError, safe_open

    state: dict[str, torch.Tensor] = {}
    files = _hf_weight_files(path)
    if not files:
        raise CheckpointError(f"{path}: no *.safetensors files", "pass an HF Chameleon model directory")
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as sf:
                for key in sf.keys():
                    prefix = next((p for p in HF_PREFIXES if key.startswith(p)), None)
                    if prefix is not None:
                        state[key[len(prefix):]] = sf.get_tensor(key)
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{f}: unreadable safetensors file ({e})") from None
    if not state:
        raise CheckpointError(f"{path}: no 'model.vqmodel.*' tensors", "is this an HF Chameleon checkpoint?")
    return state


def load_hf_chameleon(path: str | Path, *, device: torch.device | str = "cpu",
                      dtype: torch.dtype | None = torch.float32) -> VQGAN:
    """HF Chameleon directory -> :class:`VQGAN`, encoder-only unless ``decoder.*`` keys exist (decode then raises).

    Weights are cast to float32 by default: Meta runs the VQ model in float32 (§B.2).
    """
    path = Path(path)
    raw = read_json(path / "config.json")
    vq = raw.get("vq_config") if isinstance(raw, dict) else None
    if not isinstance(vq, dict):
        raise CheckpointError(f"{path / 'config.json'}: no vq_config", "is this an HF Chameleon checkpoint?")
    try:
        cfg = VQGANConfig.from_hf(vq, source=str(path / "config.json"))
    except ConfigError as e:
        raise CheckpointError(e.problem, e.hint) from None
    state = read_hf_vq_state(path)
    # HF conversions drop the decoder; a checkpoint that kept it loads as a full model.
    with_decoder = any(k.startswith("decoder.") for k in state)
    return build(cfg, state, with_decoder=with_decoder, source=str(path), device=device, dtype=dtype)
