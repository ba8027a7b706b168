"""Typed configuration of ``aromni llamagen vq-train``: a YAML file and/or ``key=value`` overrides.

Nested model fields are addressed as ``model.<field>`` (e.g. ``model.codebook_size=512``); ``preset`` picks the
starting architecture (:data:`aromni.tokenizers.image.llamagen_vq_config.PRESETS`, ``toy`` by default: 64 px ->
8x8 codes from a 256-entry, 8-d, L2-normalised codebook).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aromni.errors import ConfigError, InputError
from aromni.tokenizers.image.llamagen_vq_config import LlamaGenVQConfig
from aromni.training.loop import LoopConfig, checkpoint_meta
from aromni.training.optim import lr_factor
from aromni.utils.config import apply_overrides, dataclass_from_dict, yaml_with_overrides
from aromni.utils.io import JSONValue

#: Settings that may change when a run is resumed; anything else must match its checkpoint.
VQ_RESUMABLE = ("steps", "log_every", "eval_every", "save_every", "keep_last", "time_limit_min", "threads",
                "judge_images")


@dataclass
class LlamaGenRunConfig:
    """The settings both LlamaGen recipes share: optimisation and the loop's bookkeeping.

    AdamW with LlamaGen's betas (0.9, 0.95); learning rate: linear warm-up over ``warmup_steps``, then linear
    decay to ``min_lr_ratio * lr`` at ``steps`` (:func:`aromni.training.optim.lr_factor`; ``min_lr_ratio=1``
    keeps LlamaGen's constant rate). Gradients are clipped to ``grad_clip`` (0: off). The loop evaluates every
    ``eval_every`` steps, logs every ``log_every``, checkpoints every ``save_every`` (keeping the newest
    ``keep_last``), stops after ``time_limit_min`` minutes of training (0: no limit); ``threads`` > 0 sets
    torch's intra-op threads.
    """

    steps: int = 3000
    batch_size: int = 8
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    log_every: int = 25
    eval_every: int = 250
    save_every: int = 500
    keep_last: int = 2
    time_limit_min: float = 0.0
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1])) if len(self.betas) == 2 else self.betas
        check_counts(self, ("steps", "batch_size", "log_every", "eval_every", "save_every"), positive=True)
        check_counts(self, ("keep_last", "threads", "warmup_steps"), positive=False)
        check_numbers(self, ("weight_decay", "grad_clip", "time_limit_min"))
        if not self.lr > 0:
            raise ConfigError(f"train config: lr must be positive, got {self.lr}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"train config: betas must be two numbers in [0, 1), got {list(self.betas)}",
                              "e.g. [0.9, 0.95]")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"train config: min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}",
                              "1 keeps the rate constant after warm-up")

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        return self.lr * lr_factor(step, self.warmup_steps, self.steps, self.min_lr_ratio)

    def loop_config(self, out: Path, *, progress: bool, desc: str) -> LoopConfig:
        """How :class:`~aromni.training.loop.TrainLoop` runs the recipe (the settings go into ``trainer.json``)."""
        return LoopConfig(out=out, steps=self.steps, checkpoint_every=self.save_every, log_every=self.log_every,
                          eval_every=self.eval_every, progress=progress, desc=desc, lr=self.lr,
                          max_seconds=self.time_limit_min * 60, keep_last=self.keep_last, config=self.to_dict())

    def to_dict(self) -> dict[str, JSONValue]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class LlamaGenVQTrainConfig(LlamaGenRunConfig):
    """Hyper-parameters of a LlamaGen-VQ training run (the shared ones: :class:`LlamaGenRunConfig`).

    Generator loss (LlamaGen's ``VQLoss`` without its perceptual term)::

        l1_weight * |x - x'| + l2_weight * (x - x')^2 + vq_weight * (codebook + commitment + entropy)

    ``codebook = mean((z_q - sg[z])^2)`` and ``commitment = beta * mean((sg[z_q] - z)^2)`` on the unit sphere
    (``model.commit_loss_beta``, LlamaGen 0.25; ``model.entropy_loss_ratio``, LlamaGen 0). LlamaGen trains with
    L2 only (weight 1) plus LPIPS; LPIPS needs pretrained VGG weights this package cannot download, so there is
    no perceptual term, and the L1 term (on by default) keeps edges sharper without it.

    Optional terms, all off by default:

    * ``color_weight`` / ``fg_weight``: the VQGAN recipe's colour terms (per-patch mean colour over
      ``color_patch`` pixels, foreground-only L1 beyond ``fg_threshold`` from the border colour), which keep the
      toy world's small shapes the right colour;
    * ``gan_start >= 0``: a hinge PatchGAN term (``gan_weight``; LlamaGen's ``disc_weight`` is 0.5 from step
      20000) from that step, with its own AdamW at ``disc_lr``.

    Weight decay (``weight_decay``) applies to every tensor: LlamaGen's ``vq_train.py`` passes 0.05 to Adam, an
    L2 term; 0 here by default, as the toy runs are short. LlamaGen's rate is a constant 1e-4 at batch 128; the
    toy uses 1e-3 at batch 8 with warm-up and decay.

    Evaluation every ``eval_every`` steps: PSNR, colour error and distinct codes on ``val_images`` held-out
    images (a seeded fifth of the set at most), and with ``judge_images > 0`` the toy world image judge's
    accuracy on reconstructions of that many fresh renders (64 px models only).
    """

    images: str = ""
    preset: str = "toy"
    model: dict[str, JSONValue] = field(default_factory=dict)
    steps: int = 4000
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    vq_weight: float = 1.0
    color_weight: float = 0.0
    color_patch: int = 8
    fg_weight: float = 0.0
    fg_threshold: float = 0.15
    gan_start: int = -1
    gan_weight: float = 0.1
    disc_lr: float = 2e-4
    disc_channels: int = 32
    disc_layers: int = 2
    val_images: int = 32
    max_images: int = 0
    judge_images: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_counts(self, ("val_images", "max_images", "judge_images"), positive=False)
        check_counts(self, ("disc_channels", "disc_layers"), positive=True)
        check_numbers(self, ("l1_weight", "l2_weight", "vq_weight", "color_weight", "fg_weight", "gan_weight"))
        if not self.disc_lr > 0:
            raise ConfigError(f"vq train config: disc_lr must be positive, got {self.disc_lr}")
        if self.l1_weight + self.l2_weight <= 0:
            raise ConfigError("vq train config: l1_weight and l2_weight are both 0", "a VQ needs a pixel loss")
        if not 0.0 < self.fg_threshold < 2.0:
            raise ConfigError(f"vq train config: fg_threshold must be in (0, 2) (the [-1, 1] pixel range), "
                              f"got {self.fg_threshold}")
        model = self.model_config()  # validate the architecture now, not at the first step
        if self.color_patch <= 0 or model.image_size % self.color_patch:
            raise ConfigError(f"vq train config: color_patch must divide the image size {model.image_size}, "
                              f"got {self.color_patch}", "e.g. 8")
        if self.judge_images > 0 and model.image_size != 64:
            raise ConfigError(f"vq train config: judge_images needs 64x64 images (the toy world's renders), "
                              f"but model.image_size is {model.image_size}", "set judge_images=0")

    def model_config(self) -> LlamaGenVQConfig:
        return LlamaGenVQConfig.preset(self.preset, **self.model)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> LlamaGenVQTrainConfig:
        return dataclass_from_dict(cls, d, "vq train config", noun="keys")


def check_counts(cfg: object, names: Iterable[str], *, positive: bool) -> None:
    """Each named field of ``cfg`` is an integer ``> 0`` (``positive``) or ``>= 0``, else :class:`ConfigError`."""
    for name in names:
        value = getattr(cfg, name)
        if value < (1 if positive else 0):
            raise ConfigError(f"train config: {name} must be {'positive' if positive else '>= 0'}, got {value}")


def check_numbers(cfg: object, names: Iterable[str]) -> None:
    """Each named field of ``cfg`` is a finite number ``>= 0`` (0 turns a term off)."""
    for name in names:
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"train config: {name} must be a finite number >= 0, got {value}", "0 turns it off")


def load_vq_train_config(path: str | Path | None, overrides: list[str], *,
                         images: str | None = None) -> LlamaGenVQTrainConfig:
    """A YAML file (optional) with ``key=value`` overrides laid over it, validated. ``images`` (the CLI's
    ``--images``) is set as given: a glob such as ``*.png`` is not valid YAML, so it cannot travel as an override."""
    raw = yaml_with_overrides(path, overrides)
    if images is not None:
        raw["images"] = images
    return LlamaGenVQTrainConfig.from_dict(raw)


def saved_config(out: str | Path, overrides: list[str], resumable: tuple[str, ...]) -> dict[str, JSONValue]:
    """The settings of the run in ``out`` (from its newest checkpoint's ``trainer.json``) with ``key=value``
    changes applied; a change to a key outside ``resumable`` is refused (it would not match the checkpoint)."""
    meta = checkpoint_meta(out)
    if meta is None:
        raise InputError(f"{Path(out)}: no checkpoint to resume from", "drop --resume to start a new run")
    changes = apply_overrides({}, overrides)
    bad = sorted(set(changes) - set(resumable))
    if bad:
        raise ConfigError(f"cannot change {bad} when resuming", f"only {', '.join(resumable)} may change")
    return {**meta["config"], **changes}


def resume_vq_config(out: str | Path, overrides: list[str]) -> LlamaGenVQTrainConfig:
    """The checkpointed settings of the VQ run in ``out`` with :data:`VQ_RESUMABLE` changes applied."""
    return LlamaGenVQTrainConfig.from_dict(saved_config(out, overrides, VQ_RESUMABLE))
