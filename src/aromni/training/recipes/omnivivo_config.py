"""Typed configuration of ``aromni omnivivo train`` (the OmniVIVO speech stage): a YAML file and/or ``key=value``
overrides, saved in every checkpoint so ``--resume`` reuses it.

The optimisation defaults are the paper's (OmniVIVO §4 "Training"): AdamW with betas (0.9, 0.999), weight decay
0.01, learning rate 1e-4 with a constant schedule, gradient clipping at 1.0, batch 14, 100,000 steps, and the
average of the last five checkpoints. Where the paper is silent each field says what we chose and why.

The speech path itself is ``vivo``: the fields of :class:`~aromni.omnivivo.vivo_config.VivoConfig` (branch depth,
tap layer, speech RoPE, LoRA r / alpha, ...) except ``speech_vocab``, which the speech tokenizer's codebook size
sets. Nested keys are addressed with dots: ``vivo.branch_layers=2 vivo.lora.r=4``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aromni.errors import ConfigError, InputError
from aromni.omnivivo.vivo_config import VivoConfig
from aromni.training.loop import checkpoint_meta
from aromni.utils.config import apply_overrides, dataclass_from_dict, deep_merge, yaml_with_overrides
from aromni.utils.io import JSONValue

PRECISIONS = ("fp32", "bf16")
#: The input paths of a run (made absolute when a run starts, so a resume works from any directory).
PATH_FIELDS = ("backbone", "conditioner", "speech_tokenizer", "train_manifest", "val_manifest")
#: Settings a resumed run may change; anything else would make the resumed run another run.
RESUMABLE_CHANGES = ("steps", "log_every", "eval_every", "save_every", "keep_last", "average_last", "max_minutes",
                     "threads", "export_copy_max_mb")


@dataclass
class VivoTrainConfig:
    """Everything an OmniVIVO speech-stage run depends on.

    Inputs (paths; relative ones are taken from the current directory when the run starts):
        backbone: the frozen t2i backbone, a ``save_t2i`` directory or an official LlamaGen ``.pt``.
        backbone_block_size: image tokens of an official ``.pt`` whose ``args`` do not say (256 or 1024).
        conditioner: the frozen text conditioner, a toy conditioner directory or a local Flan-T5 directory.
        speech_tokenizer: a speech tokenizer directory (``load_tokenizer``); its codebook size is ``K``.
        train_manifest, val_manifest: JSONL files of ``{"text": ..., "audio": path}`` (audio paths relative to
            the manifest's directory). Without ``val_manifest`` there is no validation loss.

    Model: ``vivo`` (see the module docstring).

    Optimisation (the paper's): ``steps, batch_size, lr, betas, weight_decay, grad_clip``. The learning rate is
    constant (no warm-up: the paper names none). Weight decay applies to every trainable tensor, LoRA factors,
    embedding and norms included (the paper does not single any out). ``precision="bf16"`` trains under autocast
    with float32 weights.

    Checkpoints: one every ``save_every`` steps (the paper does not give the interval; 2,000 makes the last five
    cover the last 10 % of the 100k steps), the newest ``keep_last`` kept; at the end the trainable tensors of
    the last ``average_last`` SCHEDULED checkpoints (steps that are multiples of ``save_every``, and the final
    step) are averaged (0 or 1: no averaging), so an interrupted and resumed run exports the same average as an
    uninterrupted one. ``keep_last`` must leave room for them (0 keeps all); one more than ``average_last`` by
    default, so one extra checkpoint written on an interruption does not push a scheduled one out.

    Runtime: ``device`` (where the model trains and the audio is encoded), ``threads`` (torch intra-op threads,
    0: leave as is), ``max_minutes`` (stop with a checkpoint after this much training time, 0: no limit),
    ``export_copy_max_mb`` (components no larger than this are copied into the export, the others referenced by
    path), ``seed`` (initialisation and data order).
    """

    backbone: str = ""
    backbone_block_size: int | None = None
    conditioner: str = ""
    speech_tokenizer: str = ""
    train_manifest: str = ""
    val_manifest: str | None = None
    vivo: dict[str, Any] = field(default_factory=dict)
    steps: int = 100_000
    batch_size: int = 14
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    precision: str = "fp32"
    log_every: int = 100
    eval_every: int = 2000
    save_every: int = 2000
    keep_last: int = 6
    average_last: int = 5
    max_minutes: float = 0.0
    device: str = "cpu"
    threads: int = 0
    export_copy_max_mb: float = 100.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]  # YAML gives lists
        for name in ("backbone", "conditioner", "speech_tokenizer", "train_manifest"):
            if not str(getattr(self, name)).strip():
                raise ConfigError(f"omnivivo config: {name} is not set", _MISSING_HINTS[name])
        if self.val_manifest is not None and not self.val_manifest.strip():
            self.val_manifest = None
        for name in ("steps", "batch_size", "log_every", "save_every"):
            _check_int(name, getattr(self, name), 1)
        for name in ("eval_every", "keep_last", "average_last", "threads", "seed"):
            _check_int(name, getattr(self, name), 0)
        if self.backbone_block_size is not None:
            _check_int("backbone_block_size", self.backbone_block_size, 1)
        self._check_numbers()
        if self.precision not in PRECISIONS:
            raise ConfigError(f"omnivivo config: precision {self.precision!r}", f"one of {', '.join(PRECISIONS)}")
        self._check_averaging()
        self.vivo_config(1)  # refuse a bad speech-path setting now, not after the audio is encoded

    def _check_numbers(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"omnivivo config: lr must be positive, got {self.lr}", "the paper's is 1e-4")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"omnivivo config: betas must be two numbers in [0, 1), got {list(self.betas)}",
                              "the paper's are [0.9, 0.999]")
        for name in ("weight_decay", "grad_clip", "max_minutes", "export_copy_max_mb"):
            if getattr(self, name) < 0:
                raise ConfigError(f"omnivivo config: {name} must be >= 0, got {getattr(self, name)}")

    def _check_averaging(self) -> None:
        if self.keep_last and self.keep_last < self.average_last:
            raise ConfigError(f"omnivivo config: keep_last {self.keep_last} keeps fewer checkpoints than the "
                              f"average_last {self.average_last} to average", "set keep_last >= average_last + 1")
        scheduled = math.ceil(self.steps / self.save_every)
        if self.average_last > scheduled:
            raise ConfigError(f"omnivivo config: average_last {self.average_last} but steps {self.steps} / "
                              f"save_every {self.save_every} gives only {scheduled} checkpoint(s)",
                              "lower save_every or average_last")

    def vivo_config(self, speech_vocab: int) -> VivoConfig:
        """The speech path's :class:`VivoConfig` for a tokenizer of ``speech_vocab`` codes."""
        if "speech_vocab" in self.vivo:
            raise ConfigError("omnivivo config: vivo.speech_vocab is set by the speech tokenizer",
                              "remove vivo.speech_vocab; the codebook size of speech_tokenizer is used")
        return VivoConfig.from_dict({**self.vivo, "speech_vocab": speech_vocab})

    def resolved(self) -> VivoTrainConfig:
        """A copy with every input path made absolute (from the current directory)."""
        changes = {name: str(Path(getattr(self, name)).expanduser().resolve())
                   for name in PATH_FIELDS if getattr(self, name) is not None}
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, JSONValue]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> VivoTrainConfig:
        return dataclass_from_dict(cls, d, "omnivivo config", noun="keys")


_MISSING_HINTS = {
    "backbone": "set backbone= a save_t2i directory or an official LlamaGen .pt (the frozen t2i model)",
    "conditioner": "set conditioner= a toy text conditioner directory or a local Flan-T5 directory",
    "speech_tokenizer": "set speech_tokenizer= a speech tokenizer directory (e.g. the tokenizer/ of "
                        "`aromni codec train`)",
    "train_manifest": 'set train_manifest= a JSONL file of {"text": ..., "audio": path} lines',
}


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"omnivivo config: {name} must be an integer >= {minimum}, got {value!r}")


def load_train_config(path: str | Path | None, overrides: Sequence[str]) -> VivoTrainConfig:
    """A YAML file (optional) with ``key=value`` overrides, validated."""
    return VivoTrainConfig.from_dict(yaml_with_overrides(path, overrides))


def resume_config(out: str | Path, overrides: Sequence[str]) -> VivoTrainConfig:
    """The settings of the run in ``out`` (from its newest checkpoint) with ``key=value`` changes among
    :data:`RESUMABLE_CHANGES` applied (e.g. ``steps=200`` to extend it)."""
    meta = checkpoint_meta(out)
    if meta is None:
        raise InputError(f"{Path(out)}: no checkpoint to resume from", "drop --resume to start a new run")
    changes = apply_overrides({}, overrides)
    bad = sorted(set(changes) - set(RESUMABLE_CHANGES))
    if bad:
        raise ConfigError(f"cannot change {bad} when resuming", f"only {', '.join(RESUMABLE_CHANGES)} may change")
    return VivoTrainConfig.from_dict(deep_merge(meta["config"], changes))
