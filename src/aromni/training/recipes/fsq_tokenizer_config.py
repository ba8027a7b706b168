"""Typed configuration of ``aromni cosyvoice fsq-train``: a YAML file and/or ``key=value`` overrides.

Architecture fields are addressed as ``model.<field>`` (:class:`~aromni.cosyvoice.fsq_config.FSQTokenizerConfig`,
e.g. ``model.code_dims=8``); the optimiser and loop settings are the shared
:class:`~aromni.training.recipes.llamagen_vq_config.LlamaGenRunConfig` ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aromni.cosyvoice.fsq_config import FSQTokenizerConfig
from aromni.errors import ConfigError
from aromni.training.recipes.llamagen_vq_config import LlamaGenRunConfig, check_counts, saved_config
from aromni.utils.config import dataclass_from_dict, yaml_with_overrides
from aromni.utils.io import JSONValue

__all__ = ["FSQ_RESUMABLE", "FSQTrainConfig", "load_fsq_train_config", "resume_fsq_config"]

#: Settings that may change when a run is resumed; anything else must match its checkpoint.
FSQ_RESUMABLE = ("steps", "log_every", "eval_every", "save_every", "keep_last", "time_limit_min", "threads",
                 "test_at_end", "eval_batch_size")


@dataclass
class FSQTrainConfig(LlamaGenRunConfig):
    """A CTC training run of the FSQ speech tokenizer on a speech manifest (a toy world's ``speech.jsonl``).

    Training clips: the ``train`` split, at most ``max_seconds`` long (``max_train_clips > 0``: a seeded sample of
    that many). Each step draws ``batch_size`` clips with a seeded generator (its state is checkpointed, so a
    resumed run draws the same batches) and minimises the CTC loss of the head's characters against the
    transcript. Every ``eval_every`` steps: greedy-CTC CER and WER (jiwer) and code usage on ``val_clips`` clips of
    the ``validation`` split; with ``test_at_end`` the whole ``test`` split is scored once the run ends (into
    ``summary.json``).
    """

    world: str = ""
    model: dict[str, JSONValue] = field(default_factory=dict)
    steps: int = 2000
    batch_size: int = 16
    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    log_every: int = 25
    eval_every: int = 500
    save_every: int = 500
    max_seconds: float = 6.0
    max_train_clips: int = 0
    val_clips: int = 300
    eval_batch_size: int = 32
    test_at_end: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_counts(self, ("max_train_clips",), positive=False)
        check_counts(self, ("val_clips", "eval_batch_size"), positive=True)
        if not self.max_seconds > 0:
            raise ConfigError(f"fsq train config: max_seconds must be positive, got {self.max_seconds}", "e.g. 6")
        self.model_config()  # validate the architecture now, not at the first step

    def model_config(self) -> FSQTokenizerConfig:
        return FSQTokenizerConfig.from_dict(self.model)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> FSQTrainConfig:
        return dataclass_from_dict(cls, d, "fsq train config", noun="keys")


def load_fsq_train_config(path: str | Path | None, overrides: list[str], *,
                          world: str | None = None) -> FSQTrainConfig:
    """A YAML file (optional) with ``key=value`` overrides laid over it, validated; ``world`` (``--world``) wins."""
    raw = yaml_with_overrides(path, overrides)
    if world is not None:
        raw["world"] = world
    return FSQTrainConfig.from_dict(raw)


def resume_fsq_config(out: str | Path, overrides: list[str]) -> FSQTrainConfig:
    """The checkpointed settings of the run in ``out`` with :data:`FSQ_RESUMABLE` changes applied."""
    return FSQTrainConfig.from_dict(saved_config(out, overrides, FSQ_RESUMABLE))
