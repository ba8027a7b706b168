"""Typed configuration of ``aromni llamagen t2i-train``: a YAML file and/or ``key=value`` overrides.

Nested backbone fields are addressed as ``model.<field>`` (e.g. ``model.n_layer=2``); ``preset`` picks the
starting architecture (:data:`aromni.omnivivo.t2i_config.PRESETS`, ``toy`` by default). ``vocab_size`` and
``block_size`` come from the VQ (its codebook and code grid); ``caption_dim`` and ``cls_token_num`` are the text
conditioner's width and length. Relative paths are read from the working directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aromni.errors import ConfigError
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.training.recipes.llamagen_vq_config import (
    LlamaGenRunConfig,
    check_counts,
    check_numbers,
    saved_config,
)
from aromni.utils.config import dataclass_from_dict, yaml_with_overrides
from aromni.utils.io import JSONValue

#: Settings that may change when a run is resumed; anything else must match its checkpoint.
T2I_RESUMABLE = ("steps", "log_every", "eval_every", "save_every", "keep_last", "time_limit_min", "threads",
                 "judge_images", "cfg_scale", "top_k", "temperature", "max_val_pairs")


@dataclass
class LlamaGenT2ITrainConfig(LlamaGenRunConfig):
    """Hyper-parameters of a LlamaGen-style text-to-image training run (omnivivo.md §1.5, §4.1 stage 2); the
    shared ones (optimiser, schedule, loop bookkeeping): :class:`LlamaGenRunConfig`.

    Data (exactly one of ``world`` and ``manifest``):

    * ``world``: a toy world directory; its ``caption`` and ``t2i`` records give (caption, image) pairs, the
      ``train`` split for training and ``validation`` for evaluation (with the image attributes the judge needs);
    * ``manifest``: a JSONL file of ``{"text": ..., "image": ...}`` lines (image paths relative to the file;
      optional ``"attrs"``: the five toy-world attributes), ``val_manifest`` optionally the same for evaluation.

    ``vq``: the trained VQ's directory (``aromni llamagen vq-train`` writes ``OUT/tokenizer``). Its codes for
    every image are computed once and cached in the run directory.

    Text conditioner (LlamaGen: frozen Flan-T5 encoder features). The toy has no pretrained encoder, so by
    default (``text_conditioner`` empty) a :class:`~aromni.omnivivo.toy_conditioner.ToyTextConditioner` is built
    (a ``text_vocab_size`` BPE trained on the training captions, ``text_layers`` x ``text_heads`` encoder of
    width ``caption_dim``) and trained jointly with the backbone by the same loss (``train_text``); the exported
    conditioner is then frozen for OmniVIVO. ``text_conditioner`` names an existing one instead, trained further
    only with ``train_text=true``.

    Optimisation (LlamaGen's ``train_t2i.py``): teacher-forced cross-entropy on the codes; each caption replaced
    by the null caption with probability ``model.class_dropout_prob`` (0.1) in training steps only; AdamW with
    betas (0.9, 0.95), ``weight_decay`` 0.05 on tensors of 2 or more dimensions only; gradient clip 1.0.
    LlamaGen's rate is a constant 1e-4 for GPT-XL at batch 256; the toy backbone (width 128, a few thousand
    small batches on a CPU) gets 1e-3 with a linear warm-up and decay to ``min_lr_ratio`` (set
    ``min_lr_ratio=1`` for a constant rate). These defaults are a choice, not tuned at length.

    Evaluation every ``eval_every`` steps: the validation cross-entropy on up to ``max_val_pairs`` pairs (caption
    drop and dropout off) and, with ``judge_images > 0``, that many validation captions (those with attributes)
    drawn with classifier-free guidance (``cfg_scale``, ``top_k`` (0: all codes), ``temperature``, seeded),
    decoded by the VQ and read by the toy world's image judge: per-attribute and all-five accuracy.
    """

    world: str = ""
    manifest: str = ""
    val_manifest: str = ""
    vq: str = ""
    preset: str = "toy"
    model: dict[str, JSONValue] = field(default_factory=dict)
    text_conditioner: str = ""
    train_text: bool = True
    text_vocab_size: int = 512
    text_layers: int = 2
    text_heads: int = 4
    text_ffn: int = 256
    batch_size: int = 16
    weight_decay: float = 0.05
    encode_batch: int = 64
    max_val_pairs: int = 256  # 0: all
    judge_images: int = 0
    cfg_scale: float = 4.0
    top_k: int = 0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if bool(self.world) == bool(self.manifest):
            raise ConfigError("t2i train config: give exactly one of world and manifest",
                              "world=DIR (a toy world) or manifest=FILE.jsonl ({\"text\", \"image\"} lines)")
        if self.val_manifest and not self.manifest:
            raise ConfigError("t2i train config: val_manifest needs manifest", "a world has its validation split")
        if not self.vq:
            raise ConfigError("t2i train config: vq is not set", "vq=DIR (the tokenizer/ of `aromni llamagen vq-train`)")
        check_counts(self, ("encode_batch", "text_vocab_size", "text_layers", "text_heads", "text_ffn"),
                     positive=True)
        check_counts(self, ("max_val_pairs", "judge_images", "top_k"), positive=False)
        check_numbers(self, ("temperature", "cfg_scale"))
        for name in ("vocab_size", "block_size"):
            if name in self.model:
                raise ConfigError(f"t2i train config: model.{name} is set", f"{name} comes from the VQ; drop it")
        self.model_config(1, 1)  # validate the rest of the architecture now

    def model_config(self, vocab_size: int, block_size: int) -> T2IConfig:
        """The backbone's architecture for a VQ of ``vocab_size`` codes and ``block_size`` codes per image."""
        return T2IConfig.preset(self.preset, **{**self.model, "vocab_size": vocab_size, "block_size": block_size})

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> LlamaGenT2ITrainConfig:
        return dataclass_from_dict(cls, d, "t2i train config", noun="keys")


def load_t2i_train_config(path: str | Path | None, overrides: list[str]) -> LlamaGenT2ITrainConfig:
    """A YAML file (optional) with ``key=value`` overrides laid over it, validated."""
    return LlamaGenT2ITrainConfig.from_dict(yaml_with_overrides(path, overrides))


def resume_t2i_config(out: str | Path, overrides: list[str]) -> LlamaGenT2ITrainConfig:
    """The checkpointed settings of the T2I run in ``out`` with :data:`T2I_RESUMABLE` changes applied."""
    return LlamaGenT2ITrainConfig.from_dict(saved_config(out, overrides, T2I_RESUMABLE))
