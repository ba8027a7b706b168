"""Rows and batches: packing or length-bucketing the mixed sample order, sliced across data-parallel ranks.

Rows are planned from sample *lengths* only, so every rank plans the same global row sequence without reading
data, then loads just its own rows.

* ``"pack"`` (:class:`PackedRows`): best-fit packing over a few open rows (``data.pack_rows``). A sample's
  ``L - 1`` positions go into the open row with the least room that fits them; when no row fits and no new row
  may be opened, the fullest row is emitted. Samples are never split across rows (a sample longer than the row
  is dropped, or truncated, before mixing: see ``data.too_long``). Rows are right-padded to ``seq_len``; ``segment_ids`` (1, 2, ... per sample, 0 for
  padding) give block-diagonal causal attention with positions restarting per sample, and targets never cross
  a sample boundary because every sample is shifted on its own (:mod:`aromni.training.data.targets`).
* ``"bucket"`` (:class:`BucketedRows`): one sample per row. ``bucket_window`` samples are drawn, sorted by
  length, cut into blocks of ``micro_batch`` rows and the blocks shuffled; a micro-batch is one block padded to
  its longest row.

Per optimizer step the global sequence supplies ``micro_batch * grad_accum * world`` rows; rank ``r`` gets rows
``[(m * world + r) * micro_batch, ... + micro_batch)`` for micro-step ``m``, a disjoint slice of the same order.
The position is :meth:`StepBatcher.state_dict`, taken at step boundaries: resuming from it replays nothing and
skips nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from aromni.training.data.mixing import MixingSampler
from aromni.training.data.shards import Sample, ShardDataset
from aromni.training.data.targets import SampleTargets, TargetBuilder
from aromni.utils.io import JSONValue


class RowSource(Protocol):
    def next_row(self) -> list[int]: ...
    def state_dict(self) -> dict[str, JSONValue]: ...
    def load_state_dict(self, state: Mapping[str, JSONValue]) -> None: ...


class PackedRows:
    """Best-fit packing of the sampler's order into rows of at most ``seq_len`` positions.

    Up to ``open_rows`` rows are filled at once: each sample goes into the open row with the least room that
    still fits it, else into a new row while fewer than ``open_rows`` are open; when neither is possible the
    fullest open row is emitted. At the end of an epoch the open rows are emitted (fullest first), so a row never
    mixes epochs. ``open_rows=1`` is plain next-fit. The position is the sampler state plus the open rows.

    Args:
        sampler: the global sample order.
        positions: ``positions[i]`` = positions (``L - 1``, capped at ``seq_len``) of dataset sample ``i``.
        seq_len: row capacity.
        open_rows: rows filled at once.
    """

    def __init__(self, sampler: MixingSampler, positions: np.ndarray, seq_len: int, open_rows: int = 8):
        self.sampler = sampler
        self.positions = positions
        self.seq_len = seq_len
        self.open_rows = max(1, open_rows)
        self._open: list[list[int]] = []

    def _used(self, row: list[int]) -> int:
        return int(sum(int(self.positions[i]) for i in row))

    def _emit_fullest(self) -> list[int]:
        k = max(range(len(self._open)), key=lambda j: (self._used(self._open[j]), -j))
        return self._open.pop(k)

    def next_row(self) -> list[int]:
        while True:
            idx = self.sampler.peek()
            if idx is None:  # the epoch ended ("stop" mixing): flush, then start the next epoch
                if self._open:
                    return self._emit_fullest()
                self.sampler.start_epoch(self.sampler.epoch + 1)
                continue
            n = int(self.positions[idx])
            room = [(self.seq_len - self._used(r), j) for j, r in enumerate(self._open)]
            fits = [(left, j) for left, j in room if left >= n]
            if fits:
                self._open[min(fits)[1]].append(self.sampler.next())
            elif len(self._open) < self.open_rows:
                self._open.append([self.sampler.next()])
            else:
                return self._emit_fullest()

    def state_dict(self) -> dict[str, JSONValue]:
        return {"kind": "pack", "sampler": self.sampler.state_dict(), "open": [list(r) for r in self._open]}

    def load_state_dict(self, state: Mapping[str, JSONValue]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self._open = [[int(i) for i in r] for r in state.get("open", [])]


class BucketedRows:
    """One sample per row, ordered so that consecutive blocks of ``block`` rows have similar lengths.

    Args:
        sampler: the global sample order.
        positions: per-sample positions (as for :class:`PackedRows`).
        window: samples sorted together (rounded up to a multiple of ``block``).
        block: rows per block (the micro-batch).
        seed: block-shuffle seed.
    """

    def __init__(self, sampler: MixingSampler, positions: np.ndarray, window: int, block: int, seed: int = 0):
        self.sampler = sampler
        self.positions = positions
        self.block = block
        self.window = -(-window // block) * block
        self.seed = seed
        self._order: list[int] = []
        self._offset = 0
        self._window_no = -1
        self._window_start: dict[str, JSONValue] | None = None

    def _fill(self) -> None:
        self._window_no += 1
        drawn: list[int] = []
        while not drawn:
            self._window_start = self.sampler.state_dict()
            while len(drawn) < self.window:
                idx = self.sampler.next()
                if idx is None:
                    break
                drawn.append(idx)
            if not drawn:
                self.sampler.start_epoch(self.sampler.epoch + 1)
        drawn.sort(key=lambda i: (int(self.positions[i]), i))
        blocks = [drawn[i:i + self.block] for i in range(0, len(drawn), self.block)]
        rng = np.random.Generator(np.random.PCG64([self.seed, self._window_no, 104729]))
        self._order = [i for b in rng.permutation(len(blocks)) for i in blocks[b]]
        self._offset = 0

    def next_row(self) -> list[int]:
        if self._offset >= len(self._order):
            self._fill()
        self._offset += 1
        return [self._order[self._offset - 1]]

    def state_dict(self) -> dict[str, JSONValue]:
        if self._window_start is None or self._offset >= len(self._order):
            # At a window boundary the sampler's own state is the whole position.
            return {"kind": "bucket", "sampler": self.sampler.state_dict(), "offset": 0,
                    "window_no": self._window_no, "fresh": True}
        return {"kind": "bucket", "sampler": copy.deepcopy(self._window_start), "offset": self._offset,
                "window_no": self._window_no - 1, "fresh": False}

    def load_state_dict(self, state: Mapping[str, JSONValue]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self._window_no = int(state["window_no"])
        self._order, self._offset, self._window_start = [], 0, None
        if not state["fresh"]:
            self._fill()
            self._offset = int(state["offset"])


@dataclass
class Batch:
    """One micro-batch.

    Attributes:
        tokens: ``[B, T]`` input ids.
        targets: ``[B, T]`` target ids (padding: the pad id, weight 0).
        weights: ``[B, T]`` float32 NTP weights.
        tail: ``[B, T]`` bool, the up-weighted tail targets.
        perc_codes: ``[B, T]`` int64 image code per perceptual position, -1 elsewhere.
        segment_ids: ``[B, T]`` packing segments (``None``: one sample per row, plain causal attention).
        sample_ids: ``source`` of every sample, in row order.
        n_real: non-padding positions.
    """

    tokens: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor
    tail: torch.Tensor
    perc_codes: torch.Tensor
    segment_ids: torch.Tensor | None
    sample_ids: list[str] = field(default_factory=list)
    n_real: int = 0

    def to(self, device: torch.device | str) -> Batch:
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(mv(self.tokens), mv(self.targets), mv(self.weights), mv(self.tail), mv(self.perc_codes),
                     mv(self.segment_ids), self.sample_ids, self.n_real)


def collate(rows: list[list[SampleTargets]], pad_id: int, length: int | None = None,
            sample_ids: list[str] | None = None, pad_multiple: int = 8) -> Batch:
    """Rows of per-sample targets -> a :class:`Batch` of ``[B, length]`` (default: longest row, rounded up)."""
    row_len = [sum(len(s) for s in r) for r in rows]
    if length is None:
        length = -(-max(row_len) // pad_multiple) * pad_multiple
    B = len(rows)
    tokens = np.full((B, length), pad_id, dtype=np.int64)
    targets = np.full((B, length), pad_id, dtype=np.int64)
    weights = np.zeros((B, length), dtype=np.float32)
    tail = np.zeros((B, length), dtype=bool)
    perc = np.full((B, length), -1, dtype=np.int64)
    seg = np.zeros((B, length), dtype=np.int64)
    for b, row in enumerate(rows):
        at = 0
        for k, s in enumerate(row):
            n = len(s)
            sl = slice(at, at + n)
            tokens[b, sl], targets[b, sl], weights[b, sl] = s.inputs, s.targets, s.weights
            tail[b, sl], perc[b, sl], seg[b, sl] = s.tail, s.perc_codes, k + 1
            at += n
    packed = any(len(r) > 1 for r in rows)
    return Batch(torch.from_numpy(tokens), torch.from_numpy(targets), torch.from_numpy(weights),
                 torch.from_numpy(tail), torch.from_numpy(perc), torch.from_numpy(seg) if packed else None,
                 list(sample_ids or []), int(sum(row_len)))


class StepBatcher:
    """Supplies each optimizer step's micro-batches for one rank.

    Args:
        rows: the global row plan.
        dataset: random access to samples (``ds[i] -> Sample``).
        targets: per-sample target builder.
        micro_batch: rows per micro-batch.
        grad_accum: micro-batches per step per rank.
        rank, world: data-parallel position.
        pad_id: padding token id.
        fixed_len: pad every batch to this length (packing); ``None`` pads to the longest row.
        transform: ``(dataset index, sample) -> sample`` applied to each loaded sample, never making it longer
            (e.g. :class:`~aromni.training.data.cfg_dropout.CfgDropout`).
    """

    def __init__(self, rows: RowSource, dataset: ShardDataset, targets: TargetBuilder, micro_batch: int, grad_accum: int,
                 rank: int, world: int, pad_id: int, fixed_len: int | None,
                 transform: Callable[[int, Sample], Sample] | None = None):
        self.transform = transform
        self.rows, self.dataset, self.targets = rows, dataset, targets
        self.micro_batch, self.grad_accum = micro_batch, grad_accum
        self.rank, self.world = rank, world
        self.pad_id, self.fixed_len = pad_id, fixed_len

    @property
    def rows_per_step(self) -> int:
        return self.micro_batch * self.grad_accum * self.world

    def next_plan(self) -> list[list[list[int]]]:
        """This rank's sample indices: ``[micro][row][sample]``; advances the global position by one step."""
        step_rows = [self.rows.next_row() for _ in range(self.rows_per_step)]
        B = self.micro_batch
        return [step_rows[(m * self.world + self.rank) * B:(m * self.world + self.rank + 1) * B]
                for m in range(self.grad_accum)]

    def load(self, plan: list[list[list[int]]]) -> list[Batch]:
        out = []
        for micro in plan:
            samples = [[self._sample(i) for i in row] for row in micro]
            rows = [[self.targets(s) for s in row] for row in samples]
            ids = [s.source for row in samples for s in row]
            out.append(collate(rows, self.pad_id, self.fixed_len, ids))
        return out

    def _sample(self, index: int) -> Sample:
        sample = self.dataset[index]
        return self.transform(index, sample) if self.transform is not None else sample

    def next_step(self) -> list[Batch]:
        return self.load(self.next_plan())

    def state_dict(self) -> dict[str, JSONValue]:
        return {"rows": self.rows.state_dict(), "rows_per_step": self.rows_per_step}

    def load_state_dict(self, state: Mapping[str, JSONValue]) -> None:
        self.rows.load_state_dict(state["rows"])
