"""LoRA on the frozen t2i backbone with a per-row switch (omnivivo.md §4.5, choice ii).

OmniVIVO runs image rows (LoRA off: exactly LlamaGen) and speech rows (LoRA on) through ONE batched forward of
the same backbone. Every wrapped projection computes, per batch row ``b``::

    y[b] = W x[b] (+ bias)  +  s[b] * (alpha / r) * B A dropout(x[b])

with ``s`` set for the whole model by ``with lora_rows(model, scale): ...`` (a float, or ``[B]`` per row). Unlike
peft's ``adapter_names`` mixed batches it works in train mode too, takes fractional scales, and needs no
gather/scatter: the adapter runs on every row and is then switched off row-wise.

Choices (and why):

* **Bit-identical off rows.** Rows with ``s == 0`` get the base output through ``torch.where``, not ``y + 0 *
  delta``: adding a zero would flip a ``-0.0`` to ``+0.0``, and ``0 * inf = nan`` would leak an overflowing
  adapter into the image rows. A float scale of 0 skips the adapter entirely.
* **State-dict keys unchanged.** :class:`LoRALinear` takes over the base ``nn.Linear``'s own ``weight`` (and
  ``bias``) Parameters under the same names, so an injected model's keys are LlamaGen's (``...wqkv.weight``)
  plus ``...wqkv.lora_A.weight`` / ``...wqkv.lora_B.weight``. peft instead renames the base to
  ``...wqkv.base_layer.weight`` (omnivivo.md §4.6); we never do, so an official state dict loads into an injected
  model with :func:`load_backbone_state_dict`, and :func:`backbone_state_dict` gives back exactly LlamaGen's keys.
* **Init as peft's default**: ``A`` Kaiming-uniform (``a = sqrt(5)``), ``B`` zero, so a fresh adapter is an exact
  no-op. The LoRA factors are not ``nn.Linear`` modules, so the backbone's ``init_weights`` (which re-draws every
  ``nn.Linear``) cannot turn a fresh adapter into noise; load or initialise the backbone BEFORE injecting.
* **Never the image path's own layers**: the image head ``output``, the token table ``tok_embeddings`` and the
  caption MLP ``cls_embedding.*`` are refused as targets (the paper keeps the image head frozen, §5.5 item 7).
* **No rsLoRA, DoRA or per-module ranks**: the scale is ``alpha / r``, as peft's default.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.models.checkpoint.tensor_files import check_state_dict

#: The backbone's own projections (omnivivo.md §5.1): 5 per block, 180 modules on GPT-XL.
DEFAULT_TARGETS = ("wqkv", "wo", "w1", "w2", "w3")
#: Name components of the frozen image path that LoRA must never touch.
FROZEN_COMPONENTS = frozenset({"output", "tok_embeddings", "cls_embedding", "cap_proj"})
_COMPONENT = re.compile(r"^\w+$")

#: What ``lora_rows`` accepts: one scale for every row, or one per row ``[B]``.
RowScale = float | torch.Tensor


@dataclass
class LoRAConfig:
    """LoRA hyper-parameters.

    Attributes:
        r: rank of every adapter (``A [r, in]``, ``B [out, r]``).
        alpha: the adapter output is scaled by ``alpha / r`` (peft's ``lora_alpha``).
        dropout: dropout on the adapter's input (train mode only), in ``[0, 1)``.
        target_modules: module names matched as peft matches a list: a module whose full name equals an entry or
            ends with ``"." + entry``. Dotted entries (``"layers.0.attention.wqkv"``) narrow the match.
    """

    r: int = 16
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ConfigError(f"lora config: r must be a positive integer, got {self.r!r}", "e.g. r=16")
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or a <= 0:
            raise ConfigError(f"lora config: alpha must be a positive finite number, got {a!r}", "e.g. alpha=r")
        p = self.dropout
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ConfigError(f"lora config: dropout must be a probability in [0, 1), got {p!r}")
        self.alpha, self.dropout = float(a), float(p)
        if isinstance(self.target_modules, str) or not isinstance(self.target_modules, (list, tuple)):
            raise ConfigError(f"lora config: target_modules must be a list of module names, got "
                              f"{self.target_modules!r}", f"e.g. {list(DEFAULT_TARGETS)}")
        self.target_modules = tuple(self.target_modules)
        if not self.target_modules or len(set(self.target_modules)) != len(self.target_modules):
            raise ConfigError(f"lora config: target_modules must be non-empty and without repeats, got "
                              f"{list(self.target_modules)}")
        for target in self.target_modules:
            _check_target(target)

    @property
    def scaling(self) -> float:
        """``alpha / r``, the factor on the adapter's output."""
        return self.alpha / self.r


def _check_target(name: object) -> None:
    if not isinstance(name, str) or not all(_COMPONENT.match(c) for c in name.split(".")):
        raise ConfigError(f"lora config: target module {name!r} is not a module name",
                          "use names such as 'wqkv' or 'layers.0.attention.wqkv'")
    frozen = FROZEN_COMPONENTS.intersection(name.split("."))
    if frozen:
        raise ConfigError(f"lora target {name!r} is part of the frozen image path ({min(frozen)})",
                          f"LoRA goes on the blocks' projections only, e.g. {list(DEFAULT_TARGETS)}")


class LoRAFactor(nn.Module):
    """One LoRA factor, a bias-free projection ``weight [out, in]``. Deliberately not an ``nn.Linear``, so code that
    re-initialises every ``nn.Linear`` (``T2IBackbone.init_weights``) leaves the adapter alone."""

    def __init__(self, in_features: int, out_features: int, *, device: torch.device, dtype: torch.dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a row-switchable low-rank adapter.

    ``forward(x [B, ..., in]) -> [B, ..., out]``: the base output, plus ``row_scale * (alpha / r) * B A
    dropout(x)``. ``row_scale`` is a float for every row or ``[B]`` per row (set it through :func:`lora_rows`); a
    row with scale 0 is bit-identical to the base Linear.

    The base's ``weight`` / ``bias`` Parameters are adopted (same objects, same state-dict names) and frozen.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.register_parameter("weight", base.weight)
        self.register_parameter("bias", base.bias)
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, float(alpha), float(alpha) / r
        kw = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = LoRAFactor(self.in_features, r, **kw)
        self.lora_B = LoRAFactor(r, self.out_features, **kw)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.row_scale: RowScale = 1.0  # LoRA on, as peft's default; lora_rows switches rows
        self.reset_lora_parameters(generator)

    @property
    def dropout_p(self) -> float:
        return self.lora_dropout.p if isinstance(self.lora_dropout, nn.Dropout) else 0.0

    def reset_lora_parameters(self, generator: torch.Generator | None = None) -> None:
        """peft's default init: ``A`` Kaiming-uniform with ``a = sqrt(5)`` (``nn.Linear``'s rule), ``B`` zero."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5), generator=generator)
        nn.init.zeros_(self.lora_B.weight)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's output ``(alpha / r) * B A dropout(x)`` at scale 1, in the LoRA weights' dtype."""
        h = self.lora_dropout(x.to(self.lora_A.weight.dtype))
        return self.lora_B(self.lora_A(h)) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)  # exactly nn.Linear.forward
        s = self.row_scale
        if not isinstance(s, torch.Tensor):
            if s == 0.0:
                return y  # LoRA off for every row: the adapter is never computed
            d = self.delta(x)
            # peft's order (base + delta, then back to the base dtype), so scale 1 matches peft bit for bit.
            return (y + (d if s == 1.0 else d * s)).to(y.dtype)
        if x.dim() < 2 or s.shape[0] != x.shape[0]:
            raise InputError(f"LoRA row scale has {s.shape[0]} rows but the input has shape {tuple(x.shape)}",
                             "pass one scale per batch row to lora_rows")
        d = self.delta(x)
        s = s.to(device=d.device, dtype=d.dtype).view(-1, *([1] * (x.dim() - 1)))  # [B, 1, ..., 1]
        # where, not y + 0 * d: an off row keeps the base's exact bits even if the adapter overflows.
        return torch.where(s != 0, (y + d * s).to(y.dtype), y)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"alpha={self.alpha:g}, bias={self.bias is not None}")


# ---------------------------------------------------------------------------------------------- injection
def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def find_targets(model: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Full names of the modules of ``model`` that ``cfg.target_modules`` selects (peft's list rule), checked:
    every entry matches something, every match is an ``nn.Linear`` (or an already wrapped one) outside the frozen
    image path.

    Raises:
        ConfigError: a target that matches nothing, a match that is not a Linear, or a frozen image-path module.
    """
    names: list[str] = []
    for target in cfg.target_modules:
        hits = [n for n, _ in model.named_modules() if n and _matches(n, target)]
        if not hits:
            raise ConfigError(f"lora target {target!r} matches no module of the {type(model).__name__}",
                              f"targets are module names such as {list(DEFAULT_TARGETS)}")
        names += [n for n in hits if n not in names]
    for name in names:
        module = model.get_submodule(name)
        frozen = FROZEN_COMPONENTS.intersection(name.split("."))
        if frozen:
            raise ConfigError(f"lora target {name!r} is part of the frozen image path ({min(frozen)})",
                              "narrow target_modules to the blocks' projections")
        if not isinstance(module, (nn.Linear, LoRALinear)):
            raise ConfigError(f"lora target {name!r} is a {type(module).__name__}, not an nn.Linear",
                              "LoRA wraps linear projections only")
    return names


def inject_lora(model: nn.Module, cfg: LoRAConfig, *, generator: torch.Generator | None = None) -> list[str]:
    """Replace the targeted Linears of ``model`` by :class:`LoRALinear` in place, and freeze every parameter that
    was in ``model`` (as peft does: only the new A and B train). Returns the wrapped modules' names.

    Load the backbone's weights first (or later through :func:`load_backbone_state_dict`); keep new trainable
    modules (speech branch, head, embedding) outside ``model`` or unfreeze them after the call.
    """
    if lora_layers(model):
        raise ConfigError(f"the {type(model).__name__} already carries LoRA adapters",
                          "inject once; load new weights with load_lora_state_dict")
    names = find_targets(model, cfg)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        base = model.get_submodule(name)
        model.set_submodule(name, LoRALinear(base, cfg.r, cfg.alpha, cfg.dropout, generator))
    return names


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """``(name, layer)`` of every :class:`LoRALinear` in ``model``, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def _layers_or_raise(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    layers = lora_layers(model)
    if not layers:
        raise ConfigError(f"the {type(model).__name__} has no LoRA adapters", "call inject_lora(model, cfg) first")
    return layers


def lora_config_of(model: nn.Module) -> LoRAConfig:
    """The :class:`LoRAConfig` that reproduces ``model``'s adapters: shared r / alpha / dropout, and the shortest
    target list (the last name components) that selects exactly the wrapped modules, else their full names."""
    layers = _layers_or_raise(model)
    hyper = {(m.r, m.alpha, m.dropout_p) for _, m in layers}
    if len(hyper) > 1:
        raise ConfigError(f"the adapters mix ranks / alphas / dropouts {sorted(hyper)}",
                          "one LoRAConfig describes one rank, alpha and dropout")
    r, alpha, dropout = hyper.pop()
    wrapped = [n for n, _ in layers]
    short = tuple(sorted({n.rsplit(".", 1)[-1] for n in wrapped}))
    selected = {n for n, _ in model.named_modules() if n and any(_matches(n, t) for t in short)}
    targets = short if selected == set(wrapped) else tuple(wrapped)
    return LoRAConfig(r=r, alpha=alpha, dropout=dropout, target_modules=targets)


# ---------------------------------------------------------------------------------------------- row switch
def _check_scale(scale: RowScale) -> RowScale:
    if isinstance(scale, torch.Tensor):
        if scale.dim() == 0 or scale.numel() == 0 or any(d != 1 for d in scale.shape[1:]):
            raise InputError(f"LoRA row scale of shape {tuple(scale.shape)}",
                             "pass a float, or one scale per batch row: [B] (or [B, 1, 1])")
        scale = scale.reshape(-1)
        if not scale.is_floating_point():
            scale = scale.float()
        if not bool(torch.isfinite(scale).all()):  # one sync per setting, never per layer or step
            raise InputError("LoRA row scale holds nan or inf", "use 0 (LoRA off) or 1 (LoRA on) per row")
        return scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise InputError(f"LoRA row scale {scale!r} is not a finite number", "use 0.0 (off) or 1.0 (on)")
    return float(scale)


def set_lora_rows(model: nn.Module, scale: RowScale) -> None:
    """Set the adapter scale of every LoRA layer of ``model``: a float for all rows, or ``[B]`` per row (0 =
    LoRA off, bit-identical to the base; 1 = on). It stays until changed; prefer :func:`lora_rows`."""
    scale = _check_scale(scale)
    for _, layer in _layers_or_raise(model):
        layer.row_scale = scale


@contextlib.contextmanager
def lora_rows(model: nn.Module, scale: RowScale) -> Iterator[None]:
    """``with lora_rows(model, torch.tensor([0., 0., 1.])): model(...)``: per-row LoRA for the block, then the
    previous scales back. Image rows take 0, speech rows 1 (omnivivo.md §4.5)."""
    layers = _layers_or_raise(model)
    previous = [layer.row_scale for _, layer in layers]
    set_lora_rows(model, scale)
    try:
        yield
    finally:
        for (_, layer), s in zip(layers, previous):
            layer.row_scale = s


# ---------------------------------------------------------------------------------------------- state
def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable adapter tensors: ``A [r, in]`` and ``B [out, r]`` of every LoRA layer, in module order."""
    return [p for _, m in _layers_or_raise(model) for p in (m.lora_A.weight, m.lora_B.weight)]


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights under the model's own keys (``<module>.lora_A.weight``, ``<module>.lora_B.weight``),
    detached; everything :func:`load_lora_state_dict` needs."""
    out: dict[str, torch.Tensor] = {}
    for name, m in _layers_or_raise(model):
        out[f"{name}.lora_A.weight"] = m.lora_A.weight.detach()
        out[f"{name}.lora_B.weight"] = m.lora_B.weight.detach()
    return out


def load_lora_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
    """Copy adapter weights (keys as :func:`lora_state_dict`) into ``model``'s LoRA layers, strictly: every key
    present, none extra, same shapes, floating dtypes (cast to the layer's dtype).

    Raises:
        CheckpointError: naming the first missing / unexpected key or the mismatched shape (e.g. another rank).
    """
    expected = lora_state_dict(model)
    check_state_dict(expected, state, source, noun="adapter key", has="the model's adapter has",
                     keys_hint="the adapter was trained on other target modules",
                     shape_hint="the adapter has another rank or comes from another model")
    with torch.no_grad():
        for key, dst in expected.items():
            dst.copy_(state[key])


def backbone_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without the adapters: for a wrapped :class:`T2IBackbone`, exactly LlamaGen's keys
    (what ``save_t2i`` / ``build_from_state`` expect)."""
    skip = set(lora_state_dict(model)) if lora_layers(model) else set()
    return {k: v for k, v in model.state_dict().items() if k not in skip}


def load_backbone_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
    """Load base weights (e.g. an official LlamaGen state dict) into a LoRA-wrapped model: strict on every key and
    shape but the adapters', which are left as they are.

    Raises:
        CheckpointError: a missing or unexpected base key, or a shape mismatch (nothing is loaded then).
    """
    expected = backbone_state_dict(model)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        first = missing[0] if missing else unexpected[0]
        raise CheckpointError(f"{source}: {len(missing)} missing and {len(unexpected)} unexpected base key(s) "
                              f"(first {first!r})", "the weights come from another architecture")
    for key, dst in expected.items():
        if tuple(state[key].shape) != tuple(dst.shape):
            raise CheckpointError(f"{source}: {key} has shape {tuple(state[key].shape)}, the model expects "
                                  f"{tuple(dst.shape)}", "the weights come from another architecture")
    model.load_state_dict(dict(state), strict=False)


# ---------------------------------------------------------------------------------------------- merge
def merge_lora(model: nn.Module) -> list[str]:
    """Fold every adapter into its base weight, ``W + (alpha / r) B A`` (computed in float32), and put plain
    ``nn.Linear``s back. Returns the merged modules' names.

    For a SPEECH-ONLY deployment: a merged model has LoRA on for every row, so it can no longer serve LoRA-off
    image rows (never merge a model that also draws images, omnivivo.md §4.5). Refused while a row scale other
    than the default 1.0 is set (inside ``lora_rows``, or after ``set_lora_rows``).

    Raises:
        ConfigError: no adapters, or a non-default row scale.
    """
    layers = _layers_or_raise(model)
    for name, layer in layers:
        if not (isinstance(layer.row_scale, float) and layer.row_scale == 1.0):
            raise ConfigError(f"cannot merge LoRA while {name} has row scale {layer.row_scale!r}: merging turns "
                              "the adapter on for every row", "merge only a speech-only model, outside lora_rows")
    with torch.no_grad():
        for name, layer in layers:
            w = layer.weight
            delta = layer.scaling * (layer.lora_B.weight.float() @ layer.lora_A.weight.float())  # [out, in]
            merged = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
            merged.weight = nn.Parameter((w.float() + delta).to(w.dtype), requires_grad=w.requires_grad)
            if layer.bias is not None:
                merged.bias = layer.bias
            model.set_submodule(name, merged)
    return [n for n, _ in layers]
