"""Shards -> the per-rank step batcher: filtering, mixing, row planning, targets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aromni.errors import ConfigError, InputError
from aromni.training.config import DataConfig, LossConfig, PerceptualConfig
from aromni.training.data.batching import BucketedRows, PackedRows, RowSource, StepBatcher
from aromni.training.data.cfg_dropout import CfgDropout
from aromni.training.data.mixing import MixingSampler, group_indices
from aromni.training.data.shards import ShardDataset, read_manifest
from aromni.training.data.targets import TargetBuilder
from aromni.training.tasks import canonical_task
from aromni.utils.io import JSONValue
from aromni.vocab.layout import VocabLayout


@dataclass
class DataReport:
    """What the data pipeline kept and dropped (logged at the start of a run)."""

    samples: int = 0
    kept: int = 0
    too_long: int = 0
    too_short: int = 0
    other_task: int = 0
    corrupt: int = 0
    per_group: dict[str, int] = field(default_factory=dict)
    expected_epoch_samples: int | None = None
    cfg_dropout: int = 0  # samples trained without their condition (data.cfg_dropout)

    def line(self) -> str:
        groups = ", ".join(f"{g} {n}" for g, n in self.per_group.items())
        return (f"data: {self.kept}/{self.samples} samples ({groups}); dropped {self.too_long} too long, "
                f"{self.too_short} too short, {self.other_task} of other tasks, {self.corrupt} corrupt; "
                f"~{self.expected_epoch_samples} per epoch"
                + (f"; {self.cfg_dropout} without their condition (cfg_dropout)" if self.cfg_dropout else ""))


def data_layout(cfg: DataConfig) -> VocabLayout:
    manifest = read_manifest(cfg.root)
    if not manifest.get("layout"):
        raise InputError(f"{cfg.root}: the manifest has no vocabulary layout", "rebuild the shards")
    return VocabLayout.from_dict(manifest["layout"])


def build_batcher(cfg: DataConfig, loss: LossConfig, perceptual: PerceptualConfig, layout: VocabLayout, *,
                  grad_accum: int, rank: int = 0, world: int = 1) -> tuple[StepBatcher, DataReport]:
    """The batcher of rank ``rank`` (every rank plans the same global order)."""
    ds = ShardDataset(cfg.root, cfg.split, vocab_size=layout.vocab_size)
    lengths = ds.lengths()
    positions = lengths - 1
    report = DataReport(samples=len(ds) + sum(ds.skipped.values()), corrupt=sum(ds.skipped.values()))
    keep = positions >= 1
    report.too_short = int((~keep).sum())
    if cfg.too_long == "drop":
        long = keep & (positions > cfg.seq_len)
        report.too_long = int(long.sum())
        keep &= ~long
    # Our task names, read once: the task filter, task mixing and condition dropout all use them.
    task_col = np.asarray([canonical_task(t) for t in ds.column("task")]) if (
        cfg.tasks or cfg.mixing.by == "task" or cfg.cfg_dropout > 0) else np.asarray([])
    if cfg.tasks:
        in_task = np.isin(task_col, [canonical_task(t) for t in cfg.tasks])
        report.other_task = int((keep & ~in_task).sum())
        keep &= in_task
    positions = np.minimum(positions, cfg.seq_len)
    ratios = dict(cfg.mixing.ratios)
    if cfg.mixing.by == "task":
        groups_col = task_col
        ratios = {canonical_task(t): v for t, v in ratios.items()}
        unknown = sorted(set(ratios) - set(groups_col.tolist()))
        if unknown:  # a task the shards do not have is a typo or the wrong shards, not a zero share
            raise ConfigError(f"data.mixing.ratios name tasks the shards in {cfg.root} do not have: {unknown}",
                              f"the shards' tasks are {sorted(set(groups_col.tolist()))}")
    else:
        groups_col = np.asarray(ds.column("group"))
    groups = {g: idx[keep[idx]] for g, idx in group_indices(groups_col).items()}
    report.per_group = {g: int(v.size) for g, v in groups.items()}
    report.kept = int(keep.sum())
    sampler = MixingSampler(groups, ratios, cfg.mixing.exhaust, seed=cfg.seed)
    report.expected_epoch_samples = sampler.epoch_size()
    rows: RowSource
    if cfg.batching == "pack":
        rows = PackedRows(sampler, positions, cfg.seq_len, cfg.pack_rows)
    else:
        rows = BucketedRows(sampler, positions, cfg.bucket_window, cfg.micro_batch, seed=cfg.seed)
    targets = TargetBuilder(layout, loss, perceptual, max_positions=cfg.seq_len)
    # Dropping a condition only shortens a sample, so the rows planned from the full lengths still fit.
    dropout = (CfgDropout(task_col, cfg.cfg_dropout, cfg.cfg_dropout_tasks, layout, seed=cfg.seed)
               if cfg.cfg_dropout > 0 else None)
    report.cfg_dropout = int((dropout.mask & keep).sum()) if dropout is not None else 0
    batcher = StepBatcher(rows, ds, targets, cfg.micro_batch, grad_accum, rank, world, layout.pad,
                          fixed_len=cfg.seq_len if cfg.batching == "pack" else None, transform=dropout)
    return batcher, report


def describe(report: DataReport) -> dict[str, JSONValue]:
    return {"samples": report.samples, "kept": report.kept, "too_long": report.too_long,
            "too_short": report.too_short, "other_task": report.other_task, "corrupt": report.corrupt,
            "per_group": report.per_group, "cfg_dropout": report.cfg_dropout}
