"""Held-out loss: the training objective on the first rows of another split, without gradients.

The rows are planned like training rows (packing, targets, weights, perceptual positions) with natural
mixing over the split, from the same starting position every time, so successive evaluations are comparable.
Under data parallelism each rank evaluates its slice and the sums are all-reduced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import torch
from torch import nn

from aromni.training import distributed as D
from aromni.training.config import MixingConfig, TrainConfig
from aromni.training.data.pipeline import build_batcher
from aromni.training.losses import StepTotals
from aromni.vocab.layout import VocabLayout


class Evaluator:
    """Computes ``val_loss``, ``val_ntp`` and ``val_perc`` (normalised like the training loss)."""

    def __init__(self, cfg: TrainConfig, layout: VocabLayout, info: D.DistInfo):
        # Held-out loss is of the tasks as asked: no condition dropout (a training-time device for CFG).
        data = dataclasses.replace(cfg.data, split=cfg.eval.split, mixing=MixingConfig(ratios={}, exhaust="stop"),
                                   cfg_dropout=0.0)
        self.batcher, self.report = build_batcher(data, cfg.loss, cfg.perceptual, layout, grad_accum=1,
                                                  rank=info.rank, world=info.world)
        self.start = self.batcher.state_dict()
        self.plans = math.ceil(cfg.eval.max_rows / (cfg.data.micro_batch * info.world))
        self.normalize = cfg.loss.normalize
        self.perc_weight = cfg.perceptual.weight if cfg.perceptual.enabled else 0.0
        self.info = info

    @torch.no_grad()
    def __call__(self, model: nn.Module, autocast: contextlib.AbstractContextManager | None = None) -> dict[str, float | None]:
        self.batcher.load_state_dict(self.start)
        ntp = wsum = ntgt = perc = nperc = 0.0
        for _ in range(self.plans):
            if self.batcher.rows.sampler.epoch > 0:  # the split is exhausted
                break
            (b,) = self.batcher.next_step()
            b = b.to(self.info.device)
            with autocast or contextlib.nullcontext():
                _, ntp_s, perc_s = model(b.tokens, b.targets, b.weights, b.perc_codes, b.segment_ids,
                                         StepTotals(1.0, 1.0))
            ntp += float(ntp_s)
            perc += float(perc_s)
            wsum += float(b.weights.sum())
            ntgt += float((b.weights > 0).sum())
            nperc += float((b.perc_codes >= 0).sum())
        ntp, perc, wsum, ntgt, nperc = D.all_sum([ntp, perc, wsum, ntgt, nperc], self.info)
        val_ntp = ntp / max(wsum if self.normalize == "weight" else ntgt, 1e-12)
        val_perc = perc / nperc if nperc else None
        return {"val_loss": val_ntp + self.perc_weight * (val_perc or 0.0), "val_ntp": val_ntp, "val_perc": val_perc}
