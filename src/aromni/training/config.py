"""Typed training configuration: dataclasses, YAML loading and dotted ``key=value`` overrides.

A recipe YAML mirrors :class:`TrainConfig`::

    out: runs/tiny
    data: {root: data/tiny, seq_len: 256, micro_batch: 4}
    model: {decoder: {preset: tiny}}
    optim: {lr: 3.0e-4, max_steps: 200}

and any field can be overridden on the command line with its dotted path, the value parsed as YAML
(``optim.lr=1e-4``, ``loss.tail_tasks=[asr]``, ``perceptual.enabled=false``). Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aromni.errors import ConfigError
from aromni.models.config import DecoderConfig
from aromni.training.distributed import resolve_device
from aromni.utils.config import dataclass_from_dict, describe, non_finite_floats, yaml_with_overrides
from aromni.utils.io import JSONValue
from aromni.vocab.conversation import STYLES
from aromni.vocab.tasks import T2I, tail_weighted_tasks

#: The paper's pre-training mixture (§3.3): text-only 0.5 : text-image 1 : text-speech 2 (in samples).
PAPER_RATIOS = {"text": 0.5, "image": 1.0, "speech": 2.0}



def decoder_config(spec: Mapping[str, object], vocab_size: int) -> DecoderConfig:
    """The :class:`DecoderConfig` of a ``model.decoder`` mapping (``preset`` + overrides, or every field)."""
    spec = dict(spec)
    preset = spec.pop("preset", None)
    spec.setdefault("vocab_size", vocab_size)
    if preset is not None:
        return DecoderConfig.preset(str(preset), **spec)
    return DecoderConfig.from_dict(spec)

@dataclass
class MixingConfig:
    """Modality mixing over the shard ``group`` column.

    Attributes:
        ratios: group -> relative share of *samples* drawn. Groups absent from the data are ignored. An empty
            mapping means "natural": each group in proportion to its size, so a ``"stop"`` epoch is one pass over
            all the data (the SFT default).
        exhaust: ``"stop"`` ends the epoch as soon as one group runs out (the paper); ``"cycle"`` reshuffles an
            exhausted group and keeps going (epochs never end; use ``optim.max_steps``).
        by: what a "group" is: ``"group"``, the shard's modality group (text / image / speech, the paper's
            mixing), or ``"task"``, each task on its own (ratios keyed by task name, official names accepted),
            e.g. when one task has far more samples than the others of its modality.
    """

    ratios: dict[str, float] = field(default_factory=lambda: dict(PAPER_RATIOS))
    exhaust: str = "stop"
    by: str = "group"

    def __post_init__(self) -> None:
        if self.exhaust not in ("stop", "cycle"):
            raise ConfigError(f"data.mixing.exhaust must be 'stop' or 'cycle', got {self.exhaust!r}")
        if self.by not in ("group", "task"):
            raise ConfigError(f"data.mixing.by must be 'group' or 'task', got {self.by!r}")
        if self.ratios and (any(float(v) < 0 for v in self.ratios.values()) or sum(self.ratios.values()) <= 0):
            raise ConfigError(f"data.mixing.ratios must be non-negative with a positive sum, got {self.ratios}")


@dataclass
class DataConfig:
    """Where samples come from and how they become ``[B, T]`` batches.

    Attributes:
        root: shard directory (``manifest.json`` + ``<split>/shard-*.parquet``).
        split: which split to train on.
        seq_len: tokens per packed row (model inputs; a sample of ``L`` ids uses ``L - 1`` slots).
        micro_batch: rows per forward pass per process.
        batching: ``"pack"`` (several samples per row, block-diagonal attention) or ``"bucket"`` (one sample
            per row, rows of similar length batched together, padded to the longest).
        pack_rows: rows filled at once when packing (best fit; 1 = next-fit).
        bucket_window: samples sorted together when bucketing.
        too_long: samples longer than ``seq_len + 1`` ids: ``"drop"`` (the official pretrain filter) or
            ``"truncate"`` (keep the first ``seq_len + 1`` ids).
        mixing: modality mixing.
        seed: data-order seed (shuffles and group draws).
        tasks: train only on samples of these tasks (official names accepted); empty = every task. Lets one
            shard set serve both stages (e.g. pretrain on single-turn pairs, SFT on everything).
        cfg_dropout: share of the ``cfg_dropout_tasks`` samples trained without their condition, as
            ``[<bos>, <boi>, image]`` (:mod:`aromni.training.data.cfg_dropout`): trains the unconditional
            branch of classifier-free guidance. 0 (default) keeps every sample as it is.
        cfg_dropout_tasks: the image-generation tasks it applies to.
    """

    root: str = ""
    split: str = "train"
    seq_len: int = 1300
    micro_batch: int = 1
    batching: str = "pack"
    pack_rows: int = 8
    bucket_window: int = 256
    too_long: str = "drop"
    mixing: MixingConfig = field(default_factory=MixingConfig)
    seed: int = 0
    tasks: list[str] = field(default_factory=list)
    cfg_dropout: float = 0.0
    cfg_dropout_tasks: list[str] = field(default_factory=lambda: [T2I.name])

    def __post_init__(self) -> None:
        if not 0.0 <= self.cfg_dropout < 1.0:
            raise ConfigError(f"data.cfg_dropout must be in [0, 1), got {self.cfg_dropout}",
                              "e.g. 0.1: one T2I sample in ten trains the unconditional branch")
        if self.batching not in ("pack", "bucket"):
            raise ConfigError(f"data.batching must be 'pack' or 'bucket', got {self.batching!r}")
        if self.too_long not in ("drop", "truncate"):
            raise ConfigError(f"data.too_long must be 'drop' or 'truncate', got {self.too_long!r}")
        if self.seq_len < 2 or self.micro_batch < 1 or self.bucket_window < 1 or self.pack_rows < 1:
            raise ConfigError("data.seq_len must be >= 2 and data.micro_batch, data.bucket_window, data.pack_rows >= 1",
                              f"got seq_len {self.seq_len}, micro_batch {self.micro_batch}, "
                              f"bucket_window {self.bucket_window}, pack_rows {self.pack_rows}")
        _at_least("data.seed", self.seed, 0)


@dataclass
class VocabExtensionConfig:
    """Growing an existing model's vocabulary to the data's layout (new speech codes, special tokens).

    Attributes:
        enabled: extend when the shard manifest's layout is a superset of the model's; otherwise a layout
            mismatch is an error.
        init: ``"mean"``: new rows = mean of the old rows + ``noise_std`` x per-dimension std x N(0, 1);
            ``"normal"``: N(0, ``noise_std``).
        noise_std: see ``init``.
    """

    enabled: bool = True
    init: str = "mean"
    noise_std: float = 0.02

    def __post_init__(self) -> None:
        if self.init not in ("mean", "normal"):
            raise ConfigError(f"model.extend_vocab.init must be 'mean' or 'normal', got {self.init!r}")
        _at_least("model.extend_vocab.noise_std", self.noise_std, 0)


@dataclass
class ModelConfig:
    """Which decoder to train.

    Attributes:
        init_from: a bundle or decoder checkpoint directory (any layout ``aromni.models.load_decoder`` reads);
            empty trains from scratch.
        decoder: from scratch: ``DecoderConfig`` fields, optionally ``preset: <name>`` plus overrides;
            ``vocab_size`` defaults to the layout's.
        layout: from scratch, or for a checkpoint without one: a layout JSON file; empty uses the shard manifest's.
        swin_norm: ablation switch (paper Table 7): force residual-post-norm on/off; ``null`` keeps the model's.
        init_std: std of the from-scratch initialisation.
        gradient_checkpointing: recompute each block in backward (activation checkpointing).
        compile: compile each decoder block with ``torch.compile`` (inductor; the blocks share one graph, so it
            compiles once per shape). The weights, checkpoints and the exported bundle are unchanged.
        extend_vocab: vocabulary extension.
        image_embed_init: from scratch only: a VQGAN tokenizer directory or a bundle; the image-code embedding
            rows start from its codebook (see :mod:`aromni.training.model_init`). Empty: random like the rest.
    """

    init_from: str = ""
    decoder: dict[str, Any] = field(default_factory=dict)
    layout: str = ""
    swin_norm: bool | None = None
    init_std: float = 0.02
    gradient_checkpointing: bool = False
    compile: bool = False
    extend_vocab: VocabExtensionConfig = field(default_factory=VocabExtensionConfig)
    image_embed_init: str = ""

    def __post_init__(self) -> None:
        if not self.init_std > 0:
            raise ConfigError(f"model.init_std must be positive, got {self.init_std}")
        if self.image_embed_init and self.init_from:
            raise ConfigError("model.image_embed_init applies to a model trained from scratch, not to "
                              f"model.init_from={self.init_from!r}", "unset one of them")
        if self.decoder and not self.init_from:
            try:  # validate the architecture now, not after the data is planned (the vocabulary size comes later)
                decoder_config(self.decoder, 1)
            except ConfigError as e:
                raise ConfigError(f"model.decoder: {e.problem.removeprefix('decoder config: ')}", e.hint) from None


@dataclass
class LossConfig:
    """Weighted next-token prediction (paper eq. 2).

    Attributes:
        mode: ``"pretrain"``: every target counts (the official pretrain has no prompt masking); ``"sft"``:
            only response targets (the shard ``response`` column) count.
        weighted_ntp: ablation switch; ``false`` gives every counted target weight 1 (the paper's "simple NTP").
        tail_tasks: tasks whose assistant *text* targets are up-weighted (official: ``image_caption``,
            ``speech_to_text`` = our ``caption``, ``asr``; official names are accepted, see ``tasks.py``).
        tail_weight: their weight (official 2.0). ``<eos>``/``<eom>`` and modality markers are not up-weighted.
        segment_weight: SFT option: weight of targets strictly inside an ``<ins> ... <res>`` pair (official
            ``--segment_loss_weight``; 1.0 is off).
        normalize: ``"weight"``: sum(w * ce) / sum(w) (the official code); ``"tokens"``: sum(w * ce) / N, N the
            number of counted targets (eq. 2's 1/T).
        chunk_size: positions per LM-head chunk in the fused loss (0 = one chunk); bounds the fp32 logits held
            to ``[chunk_size, V]``.
        fused_ce: fused LM head + cross-entropy (gradient computed in the forward pass); ``false`` uses plain
            autograd (``F.cross_entropy`` on float32 logits).
    """

    mode: str = "pretrain"
    weighted_ntp: bool = True
    tail_tasks: list[str] = field(default_factory=lambda: list(tail_weighted_tasks()))
    tail_weight: float = 2.0
    segment_weight: float = 1.0
    normalize: str = "weight"
    chunk_size: int = 4096
    fused_ce: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("pretrain", "sft"):
            raise ConfigError(f"loss.mode must be 'pretrain' or 'sft', got {self.mode!r}")
        if self.normalize not in ("weight", "tokens"):
            raise ConfigError(f"loss.normalize must be 'weight' or 'tokens', got {self.normalize!r}")
        if self.tail_weight <= 0 or self.segment_weight <= 0 or self.chunk_size < 0:
            raise ConfigError("loss.tail_weight and loss.segment_weight must be positive, loss.chunk_size >= 0")


@dataclass
class PerceptualConfig:
    """The perceptual loss (paper eq. 3-4).

    Attributes:
        enabled: ablation switch.
        weight: lambda_perc.
        table: the frozen code-embedding table E ``[n_image_codes, d_e]``: an image tokenizer directory or bundle
            (its VQGAN codebook ``quantize.embedding.weight``), or a ``.safetensors`` / ``.pt`` / ``.ckpt`` file
            holding one tensor.
        reduction: ``"mean"``: mean over positions and the d_e dims (``F.mse_loss``, the official code);
            ``"sum"``: squared L2 summed over d_e, mean over positions (eq. 3 literally = d_e x "mean").
        align: ``"target"``: the hidden state at t is regressed onto E[y_t] for targets y_t that are image codes
            (eq. 3); ``"input"``: onto the embedding of the code *read* at t (the official code's alignment).
        tasks: restrict to these tasks (official pretrain: ``[t2i]``); empty = every task.
    """

    enabled: bool = True
    weight: float = 1.0
    table: str = ""
    reduction: str = "mean"
    align: str = "target"
    tasks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.reduction not in ("mean", "sum"):
            raise ConfigError(f"perceptual.reduction must be 'mean' or 'sum', got {self.reduction!r}")
        if self.align not in ("target", "input"):
            raise ConfigError(f"perceptual.align must be 'target' or 'input', got {self.align!r}")
        if self.weight < 0:
            raise ConfigError("perceptual.weight must be >= 0")


@dataclass
class OptimConfig:
    """AdamW with linear warmup then linear decay (paper Table 8), clipping and accumulation.

    Attributes:
        lr: peak learning rate.
        min_lr_ratio: the decay ends at ``lr * min_lr_ratio``.
        warmup_ratio: share of ``max_steps`` spent warming up (Table 8: 0.05); ``warmup_steps`` wins if > 0.
        max_steps: optimizer steps to train.
        weight_decay: applied to parameters with >= 2 dims only (matrices, embeddings).
        grad_clip: global gradient-norm clip (0 disables).
        grad_accum: micro-batches per optimizer step per process.
    """

    lr: float = 6e-5
    min_lr_ratio: float = 0.0
    warmup_ratio: float = 0.05
    warmup_steps: int = 0
    max_steps: int = 1000
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    grad_clip: float = 1.0
    grad_accum: int = 1

    def __post_init__(self) -> None:
        if not self.lr > 0 or self.max_steps < 1 or self.grad_accum < 1:
            raise ConfigError("optim.lr must be positive, optim.max_steps and optim.grad_accum >= 1",
                              f"got lr {self.lr}, max_steps {self.max_steps}, grad_accum {self.grad_accum}")
        if not 0 <= self.warmup_ratio < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("optim.warmup_ratio must be in [0, 1) and optim.min_lr_ratio in [0, 1]",
                              f"got warmup_ratio {self.warmup_ratio}, min_lr_ratio {self.min_lr_ratio}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas must be two values in [0, 1), got {self.betas}")
        _at_least("optim.warmup_steps", self.warmup_steps, 0)
        _at_least("optim.weight_decay", self.weight_decay, 0)
        _at_least("optim.grad_clip", self.grad_clip, 0)
        if not self.eps > 0:
            raise ConfigError(f"optim.eps must be positive, got {self.eps}")

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps > 0 else round(self.warmup_ratio * self.max_steps)


@dataclass
class CheckpointConfig:
    """Attributes:
        every: save every N optimizer steps (0: only at the end).
        keep_last: how many step checkpoints to keep.
        resume: ``"auto"`` (latest checkpoint under ``OUT/checkpoints`` if any), ``"none"``, or a directory.
        stop_after: save and exit after this optimizer step (for time-sliced jobs: the next launch resumes);
            the schedule still spans ``optim.max_steps``. 0 = run to the end.
    """

    every: int = 500
    keep_last: int = 3
    resume: str = "auto"
    stop_after: int = 0

    def __post_init__(self) -> None:
        for name in ("every", "keep_last", "stop_after"):
            _at_least(f"checkpoint.{name}", getattr(self, name), 0)
        if not self.resume.strip():
            raise ConfigError("checkpoint.resume is empty", "use auto, none, or a checkpoint directory")


@dataclass
class EvalConfig:
    """Held-out loss, logged with the step's record as ``val_loss``, ``val_ntp``, ``val_perc``.

    Attributes:
        every: evaluate every N optimizer steps (and at the last step); 0 disables.
        split: shard split to evaluate.
        max_rows: evaluate on the first N packed rows of that split (the same rows every time).
    """

    every: int = 0
    split: str = "validation"
    max_rows: int = 64

    def __post_init__(self) -> None:
        if self.every < 0 or self.max_rows < 1:
            raise ConfigError("eval.every must be >= 0 and eval.max_rows >= 1")


@dataclass
class LogConfig:
    """Attributes:
        every: log every N steps (the JSONL file gets every step logged).
        tensorboard: also write TensorBoard events under ``OUT/tensorboard``.
        progress: tqdm bar (off when stderr is not a terminal).
        sample_ids: put the ``source`` of every sample consumed in each JSONL record (for audits/tests).
    """

    every: int = 1
    tensorboard: bool = False
    progress: bool = True
    sample_ids: bool = False

    def __post_init__(self) -> None:
        _at_least("log.every", self.every, 0)


@dataclass
class ExportConfig:
    """The bundle written at the end of training (``OUT/bundle``).

    Attributes:
        enabled: write it.
        tokenizers_from: a bundle whose tokenizers are copied.
        text, image, speech: tokenizer directories (override ``tokenizers_from``).
        dtype: weight dtype of the export (``float32``, ``bfloat16``, ``float16``).
        style: prompt style recorded in the bundle.
    """

    enabled: bool = True
    tokenizers_from: str = ""
    text: str = ""
    image: str = ""
    speech: str = ""
    dtype: str = "float32"
    style: str = "official"

    def __post_init__(self) -> None:
        dtypes = ("float32", "bfloat16", "float16")  # aromni.training.export.DTYPES
        if self.dtype not in dtypes:
            raise ConfigError(f"export.dtype must be one of {', '.join(dtypes)}, got {self.dtype!r}")

        if self.style not in STYLES:
            raise ConfigError(f"export.style must be one of {', '.join(STYLES)}, got {self.style!r}")


@dataclass
class DistConfig:
    """Attributes:
        strategy: ``"auto"`` (DDP when launched with several processes), ``"ddp"``, ``"fsdp"`` (FSDP2
            ``fully_shard`` per block), or ``"none"``.
        backend: ``"auto"`` (nccl on CUDA, gloo on CPU) or a torch.distributed backend name.
    """

    strategy: str = "auto"
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.strategy not in ("auto", "none", "ddp", "fsdp"):
            raise ConfigError(f"dist.strategy must be auto, none, ddp or fsdp, got {self.strategy!r}")


@dataclass
class TrainConfig:
    """Everything a training run needs. See the module docstring for the file format."""

    out: str = "runs/train"
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    num_threads: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    def __post_init__(self) -> None:
        if not self.out.strip():
            raise ConfigError("out must name a run directory, got an empty string",
                              "e.g. out=runs/my_run (checkpoints, metrics and the bundle go there)")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        _at_least("seed", self.seed, 0)
        _at_least("num_threads", self.num_threads, 0)
        if self.device != "auto":  # a device this machine lacks fails here, before any data is read
            resolve_device(self.device)
        self._check_context()

    def _check_context(self) -> None:
        """A from-scratch decoder must hold a packed row: ``data.seq_len`` inputs within ``max_seq_len``."""
        if not self.model.decoder or self.model.init_from:
            return
        context = decoder_config(self.model.decoder, 1).max_seq_len
        if context < self.data.seq_len:
            raise ConfigError(f"data.seq_len {self.data.seq_len} is longer than the decoder's context "
                              f"(model.decoder max_seq_len {context})",
                              f"set data.seq_len <= {context} or model.decoder.max_seq_len >= {self.data.seq_len}")

    def to_dict(self) -> dict[str, JSONValue]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> TrainConfig:
        """A validated config from a plain mapping: unknown keys, values of the wrong type, ``nan``/``inf``
        anywhere (``model.decoder`` included) and out-of-range values are :class:`ConfigError`."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"a training config must be a mapping of settings, got {describe(d)}")
        bad = non_finite_floats(d)
        if bad:
            raise ConfigError(f"{bad[0]} is not a finite number" + (f" (nor {', '.join(bad[1:])})" if bad[1:] else ""),
                              "nan and inf are not settings; numbers beyond ~1.8e308 overflow to inf")
        return dataclass_from_dict(cls, d, "training config", noun="config keys")

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
        """Load ``path`` (or the defaults when ``None``) and apply ``key=value`` overrides."""
        return cls.from_dict(yaml_with_overrides(path, overrides))


def _at_least(key: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{key} must be >= {low}, got {value}")
