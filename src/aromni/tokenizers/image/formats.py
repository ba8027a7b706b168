"""Official VQGAN files (official-formats.md §B.3, §B.5).

* Meta: ``vqgan.yaml`` (``model.params.{embed_dim, n_embed, ddconfig, lossconfig, ...}``) + ``vqgan.ckpt``
  (a dict whose ``"state_dict"`` holds ``encoder.*``, ``decoder.*``, ``quantize.embedding.weight``,
  ``quant_conv.*``, ``post_quant_conv.*`` and possibly ``loss.*`` training-loss weights, which we skip and count).
* HF Chameleon: ``config.json["vq_config"]`` + safetensors with ``model.vqmodel.*``: encoder, quant_conv,
  codebook and post_quant_conv only. HF conversion drops the decoder, so such a model cannot decode.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import torch
import yaml
from safetensors import SafetensorError, safe_open

from aromni.errors import CheckpointError, ConfigError
from aromni.tokenizers.image.config import VQGANConfig
from aromni.utils.io import atomic_path, atomic_write_text, read_json
from aromni.utils.safe_load import load_weights_only

#: Prefixes of training-only entries in Meta/taming checkpoints (perceptual loss, discriminator, logvar).
IGNORED_PREFIXES = ("loss.",)
#: Where HF Chameleon checkpoints keep the VQ model.
HF_PREFIXES = ("model.vqmodel.", "vqmodel.")

StateDict = dict[str, torch.Tensor]


def read_meta_yaml(path: str | Path) -> VQGANConfig:
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


def split_meta_state(raw: object, source: str) -> tuple[StateDict, list[str]]:
    """Meta's checkpoint object -> (model tensors, ignored loss/discriminator keys)."""
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: no 'state_dict' of tensors", "expected Meta's vqgan.ckpt layout")
    ignored = sorted(k for k in state if k.startswith(IGNORED_PREFIXES))
    return {k: v for k, v in state.items() if k not in set(ignored)}, ignored


def read_chameleon(yaml_path: str | Path, ckpt_path: str | Path) -> tuple[VQGANConfig, StateDict, list[str]]:
    """Meta's ``vqgan.yaml`` + ``vqgan.ckpt`` -> (config, model tensors, ignored loss/discriminator keys).

    ``VQGAN.from_chameleon`` builds the model from them (strict on model keys).
    """
    cfg = read_meta_yaml(yaml_path)
    state, ignored = split_meta_state(load_weights_only(Path(ckpt_path)), str(ckpt_path))
    return cfg, state, ignored


class ChameleonModel(Protocol):
    """What :func:`save_chameleon` needs of a model (a :class:`~aromni.tokenizers.image.vqgan.VQGAN`)."""

    cfg: VQGANConfig
    has_decoder: bool

    def state_dict(self) -> Mapping[str, torch.Tensor]: ...


def save_chameleon(model: ChameleonModel, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``vqgan.yaml`` + ``vqgan.ckpt`` in Meta's layout (for the official inference code)."""
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


def read_hf_chameleon(path: str | Path) -> tuple[VQGANConfig, StateDict]:
    """HF Chameleon directory -> (config, VQ model tensors); ``VQGAN.from_hf_chameleon`` builds the model."""
    path = Path(path)
    raw = read_json(path / "config.json")
    vq = raw.get("vq_config") if isinstance(raw, dict) else None
    if not isinstance(vq, dict):
        raise CheckpointError(f"{path / 'config.json'}: no vq_config", "is this an HF Chameleon checkpoint?")
    try:
        cfg = VQGANConfig.from_hf(vq, source=str(path / "config.json"))
    except ConfigError as e:
        raise CheckpointError(e.problem, e.hint) from None
    return cfg, read_hf_vq_state(path)
