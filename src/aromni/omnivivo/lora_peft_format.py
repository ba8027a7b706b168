"""peft's on-disk LoRA format: export our adapters so ``PeftModel.from_pretrained(base, dir)`` loads them, and
import what peft's ``save_pretrained`` writes (checked against peft 0.21.2).

A peft adapter is a directory with

* ``adapter_config.json``: ``{"peft_type": "LORA", "r", "lora_alpha", "lora_dropout", "target_modules",
  "bias": "none", "task_type": null, ...}``;
* ``adapter_model.safetensors``: for every wrapped module ``<path>`` of the base model,
  ``base_model.model.<path>.lora_A.weight [r, in]`` and ``base_model.model.<path>.lora_B.weight [out, r]``, with
  no adapter name in the keys (metadata ``{"format": "pt"}``). Older peft wrote ``adapter_model.bin`` (a torch
  pickle), read here with ``weights_only=True`` only.

The import refuses, with one line naming the option and the fix, every peft option that changes the forward in
a way :class:`~aromni.omnivivo.lora.LoRALinear` does not compute (rsLoRA, DoRA, per-module ranks, LoRA biases,
extra trained modules, initialisations that rewrite the base weights, ...). Unknown options pass only when their
value is empty (``null``, ``false``, ``{}``, ``[]``), so an adapter from a newer peft is not misread silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.omnivivo.lora import (
    DEFAULT_TARGETS,
    LoRAConfig,
    find_targets,
    inject_lora,
    load_lora_state_dict,
    lora_config_of,
    lora_layers,
    lora_state_dict,
)
from aromni.utils.io import JSONValue, atomic_dir, atomic_path, atomic_write_json, path_kind, read_json
from aromni.utils.safe_load import load_weights_only

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
LEGACY_WEIGHTS = "adapter_model.bin"
#: ``PeftModel`` -> ``LoraModel`` (``base_model``) -> the wrapped model (``model``).
PREFIX = "base_model.model."
_KEY = re.compile(r"^base_model\.model\.(?P<path>.+)\.lora_(?P<ab>[AB])\.weight$")
_NAMED_KEY = re.compile(r"\.lora_[AB]\.[^.]+\.weight$")

#: Options that must keep their neutral value: the forward we compute is plain LoRA with scale alpha / r.
_NEUTRAL: dict[str, tuple[JSONValue, ...]] = {
    "bias": ("none",), "use_rslora": (False, None), "use_dora": (False, None), "fan_in_fan_out": (False, None),
    "lora_bias": (False, None), "modules_to_save": (None, []), "rank_pattern": ({}, None),
    "alpha_pattern": ({}, None), "layers_to_transform": (None, []), "layers_pattern": (None, [], ""),
    "exclude_modules": (None, [], ""), "layer_replication": (None, []), "target_parameters": (None, []),
    "trainable_token_indices": (None, [], {}), "use_qalora": (False, None), "loftq_config": ({}, None),
    "alora_invocation_tokens": (None, []),
}
#: Initialisations that touch only A and B (others, e.g. PiSSA or LoftQ, rewrite the base weights too).
_PLAIN_INITS: tuple[JSONValue, ...] = (True, False, "gaussian", "eva", "orthogonal")
#: Options with no effect on the forward of a loaded adapter, whatever their value.
_IGNORED = frozenset({"peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode",
                      "auto_mapping", "peft_version", "eva_config", "corda_config", "lora_ga_config",
                      "megatron_config", "megatron_core", "qalora_group_size", "ensure_weight_tying",
                      "r", "lora_alpha", "lora_dropout", "target_modules", "init_lora_weights"})


def peft_config_dict(cfg: LoRAConfig, base_model_name_or_path: str | None = None) -> dict[str, JSONValue]:
    """``adapter_config.json`` for ``cfg``: the options peft has read since 0.9, with peft's neutral values."""
    alpha = int(cfg.alpha) if float(cfg.alpha).is_integer() else cfg.alpha
    return {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": base_model_name_or_path,
        "revision": None, "inference_mode": True, "r": cfg.r, "lora_alpha": alpha, "lora_dropout": cfg.dropout,
        "target_modules": list(cfg.target_modules), "bias": "none", "fan_in_fan_out": False,
        "init_lora_weights": True, "use_rslora": False, "use_dora": False, "modules_to_save": None,
        "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {},
    }


def export_peft_adapter(model: nn.Module, path: str | Path, *, base_model_name_or_path: str | None = None,
                        overwrite: bool = False) -> LoRAConfig:
    """Write ``model``'s adapters to directory ``path`` in peft's format (built in a temporary sibling and moved
    into place). Returns the config written.

    Args:
        model: the injected model; its module paths become the keys (``base_model.model.<path>...``), so export
            the same module tree that peft will wrap (e.g. the ``T2IBackbone`` itself).
        base_model_name_or_path: recorded for peft (``PeftModel.from_pretrained`` does not need it).
        overwrite: replace an existing non-empty directory (the WHOLE directory); refused otherwise.
    """
    path = Path(path)
    if path_kind(path) not in ("dir", "missing"):
        raise InputError(f"{path}: exists and is not a directory", "choose a directory path for the adapter")
    cfg = lora_config_of(model)
    state = {PREFIX + k: v.contiguous().cpu() for k, v in lora_state_dict(model).items()}
    with atomic_dir(path, overwrite=overwrite) as tmp:
        with atomic_path(tmp / WEIGHTS) as weights:
            save_file(state, str(weights), metadata={"format": "pt"})
        atomic_write_json(tmp / CONFIG, peft_config_dict(cfg, base_model_name_or_path))
    return cfg


# ---------------------------------------------------------------------------------------------- reading
def _config_from_json(raw: JSONValue, where: str) -> tuple[LoRAConfig, str | None]:
    """(config, regex): the :class:`LoRAConfig` of a peft ``adapter_config.json``; ``target_modules`` given as a
    regex string comes back as ``regex`` (the module list is then read off the weights)."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where}: not a JSON object", "expected peft's adapter_config.json")
    if raw.get("peft_type") != "LORA":
        raise CheckpointError(f"{where}: peft_type is {raw.get('peft_type')!r}, not 'LORA'",
                              "only plain LoRA adapters can be imported")
    for key, value in raw.items():
        if key in _NEUTRAL and value not in _NEUTRAL[key]:
            raise CheckpointError(f"{where}: {key} = {value!r} is not supported",
                                  f"export a plain LoRA adapter ({key} = {_NEUTRAL[key][0]!r})")
        if key not in _NEUTRAL and key not in _IGNORED and value not in (None, False, {}, [], ""):
            raise CheckpointError(f"{where}: unknown option {key} = {value!r} (a newer peft?)",
                                  "remove it from the file if it does not change the forward")
    if raw.get("init_lora_weights", True) not in _PLAIN_INITS:
        raise CheckpointError(f"{where}: init_lora_weights = {raw['init_lora_weights']!r} also rewrites the base "
                              "weights", "convert the adapter with peft (path_initial_model_for_weight_conversion)")
    targets = raw.get("target_modules")
    regex = targets if isinstance(targets, str) else None
    if regex is None and not isinstance(targets, list):
        raise CheckpointError(f"{where}: target_modules is {targets!r}", "expected a list of module names")
    try:
        cfg = LoRAConfig(r=raw.get("r", 8), alpha=raw.get("lora_alpha", 8), dropout=raw.get("lora_dropout", 0.0),
                         # a regex's module list comes from the weights; the defaults only fill the slot here
                         target_modules=DEFAULT_TARGETS if regex is not None else tuple(targets))
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e.problem}", e.hint) from None
    return cfg, regex


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], Path]:
    file = path / WEIGHTS
    if file.is_file():
        try:
            return load_file(str(file)), file
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{file}: unreadable safetensors file ({e})", "export the adapter again") from None
    legacy = path / LEGACY_WEIGHTS
    if legacy.is_file():
        state = load_weights_only(legacy)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{legacy}: not a dict of tensors", "save the adapter with peft's save_pretrained")
        return state, legacy
    raise CheckpointError(f"{path}: no {WEIGHTS}", "a peft adapter directory holds adapter_config.json and "
                          f"{WEIGHTS}")


def _module_weights(state: dict[str, torch.Tensor], r: int, file: Path) -> dict[str, dict[str, torch.Tensor]]:
    """``{module path: {"A": [r, in], "B": [out, r]}}`` from peft's keys, checked for form and rank."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        m = _KEY.match(key)
        if m is None:
            hint = ("save it with peft's save_pretrained (keys without the adapter name)" if _NAMED_KEY.search(key)
                    else "only LoRA A/B weights of linear layers can be imported")
            raise CheckpointError(f"{file}: foreign key {key!r}", hint)
        modules.setdefault(m["path"], {})[m["ab"]] = tensor
    for module, ab in sorted(modules.items()):
        if set(ab) != {"A", "B"}:
            have = next(iter(ab))
            raise CheckpointError(f"{file}: {module} has lora_{have} but no lora_{'B' if have == 'A' else 'A'}",
                                  "the file is truncated; export it again")
        a, b = ab["A"], ab["B"]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != r or b.shape[1] != r:
            raise CheckpointError(f"{file}: {module} has lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)}, "
                                  f"not rank r={r} as {CONFIG} says", "the weights and the config do not match")
    if not modules:
        raise CheckpointError(f"{file}: holds no LoRA weights", "export the adapter again")
    return modules


def read_peft_adapter(path: str | Path) -> tuple[LoRAConfig, dict[str, torch.Tensor]]:
    """A peft LoRA adapter directory -> ``(config, state)``, ``state`` under our keys (``<path>.lora_A.weight``,
    as :func:`~aromni.omnivivo.lora.lora_state_dict`). A regex ``target_modules`` becomes the module list.

    Raises:
        InputError: ``path`` is not a directory.
        CheckpointError: a missing, malformed or unsupported config or weights file (one line: problem and fix).
    """
    path = Path(path)
    if path_kind(path) != "dir":
        raise InputError(f"{path}: no such adapter directory", f"pass the directory holding {CONFIG}")
    try:
        raw = read_json(path / CONFIG)
    except InputError as e:
        raise CheckpointError(e.problem, f"a peft adapter directory holds {CONFIG} and {WEIGHTS}") from None
    cfg, regex = _config_from_json(raw, str(path / CONFIG))
    tensors, file = _read_tensors(path)
    modules = _module_weights(tensors, cfg.r, file)
    if regex is not None:
        unmatched = sorted(m for m in modules if re.fullmatch(regex, m) is None)
        if unmatched:
            raise CheckpointError(f"{file}: {unmatched[0]} is outside target_modules {regex!r}",
                                  "the weights and the config do not match")
        try:
            cfg = LoRAConfig(r=cfg.r, alpha=cfg.alpha, dropout=cfg.dropout, target_modules=tuple(sorted(modules)))
        except ConfigError as e:
            raise CheckpointError(f"{file}: {e.problem}", e.hint) from None
    state = {f"{m}.lora_{ab}.weight": t for m, pair in modules.items() for ab, t in pair.items()}
    return cfg, state


def import_peft_adapter(model: nn.Module, path: str | Path) -> LoRAConfig:
    """Load a peft LoRA adapter into ``model``: inject it with the file's config when ``model`` has no adapters
    yet (the same config otherwise), then copy the weights. Everything is checked before ``model`` changes.

    Raises:
        InputError / CheckpointError: see :func:`read_peft_adapter`; also targets the model does not have, a
            module with weights but not targeted (or targeted without weights), a shape that does not fit the
            model's layer, or adapters already in ``model`` with another config.
    """
    cfg, state = read_peft_adapter(path)
    try:
        names = find_targets(model, cfg)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e.problem}", "the adapter was made for another model") from None
    in_file = {k.rsplit(".lora_", 1)[0] for k in state}
    extra, absent = sorted(in_file - set(names)), sorted(set(names) - in_file)
    if extra or absent:
        what = f"weights for {extra[0]!r}, which target_modules does not select" if extra else \
            f"no weights for the targeted module {absent[0]!r}"
        raise CheckpointError(f"{path}: the adapter has {what}", "the adapter was made for another model")
    for name in names:
        layer = model.get_submodule(name)
        a, b = state[f"{name}.lora_A.weight"], state[f"{name}.lora_B.weight"]
        if a.shape[1] != layer.in_features or b.shape[0] != layer.out_features:
            raise CheckpointError(f"{path}: {name} adapter maps {a.shape[1]} -> {b.shape[0]} features, the model's "
                                  f"layer {layer.in_features} -> {layer.out_features}",
                                  "the adapter was made for another model size")
    if lora_layers(model):
        have = lora_config_of(model)
        if (have.r, have.alpha) != (cfg.r, cfg.alpha) or sorted(n for n, _ in lora_layers(model)) != sorted(names):
            raise CheckpointError(f"{path}: the model already carries adapters of another config (r={have.r}, "
                                  f"alpha={have.alpha:g})", "import into a model without adapters")
    else:
        inject_lora(model, cfg)
    load_lora_state_dict(model, state, source=str(path))
    return cfg
