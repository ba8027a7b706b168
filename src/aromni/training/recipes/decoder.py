"""The decoder's optimizer step (pretrain and SFT) as a :class:`~aromni.training.loop.TrainRecipe`.

One step: the rank's ``grad_accum`` micro-batches are read first, so the loss normalisers of the whole global step
are known (:class:`~aromni.training.losses.StepTotals`); each micro-batch is forwarded inside its gradient-sync
context (DDP ``no_sync`` / FSDP2 sync flag off on all but the last) and yielded to the loop, which back-propagates
it there; the last update carries the loss summed over ranks (checked by the loop after the backward passes, so
every rank stops together on a nan), is clipped and applied; then the schedule steps.

Its record adds the decoder's fields to the loop's (:meth:`DecoderRecipe.log_fields`: tokens/s, the data epoch,
the step's sample ids when ``log.sample_ids``) and its evaluation is the held-out loss of
:class:`~aromni.training.evaluate.Evaluator`. The run around the loop (setup, export) is
:class:`~aromni.training.trainer.Trainer`; its ``checkpoints/step-N`` directories are the loop's checkpoint store
:class:`~aromni.training.trainer.StepDirStore`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from aromni.training import distributed as D
from aromni.training.checkpoint import StateValue
from aromni.training.config import TrainConfig
from aromni.training.data.batching import Batch, StepBatcher
from aromni.training.evaluate import Evaluator
from aromni.training.loop import Logs, Record, Update
from aromni.training.losses import StepTotals, TrainingObjective


class DecoderRecipe:
    """The decoder's step on :class:`~aromni.training.loop.TrainLoop`; see the module docstring.

    ``objective`` is the unwrapped model (parameters, clipping), ``model`` its DDP / FSDP wrapper (forward).
    After each step :attr:`batches` holds the step's micro-batches (their sample ids go into the record).
    ``evaluator`` (``None``: no held-out evaluation) runs under ``autocast()``."""

    def __init__(self, cfg: TrainConfig, info: D.DistInfo, objective: TrainingObjective, model: nn.Module,
                 opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR, batcher: StepBatcher,
                 evaluator: Evaluator | None = None,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        self.cfg, self.info, self.objective, self.model = cfg, info, objective, model
        self.opt, self.sched, self.batcher = opt, sched, batcher
        self.evaluator, self.autocast = evaluator, autocast
        self.batches: list[Batch] = []
        self.started = time.perf_counter()  # of the run (``elapsed_s``)
        self._step_start = self._step_end = self.started
        self._last: Logs = {}

    def modules(self) -> Mapping[str, nn.Module]:
        return {"objective": self.objective}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def _totals(self, batches: list[Batch]) -> tuple[StepTotals, dict[str, float]]:
        local = [sum(float(b.weights.sum()) for b in batches), sum(int((b.weights > 0).sum()) for b in batches),
                 sum(float(b.weights[b.tail].sum()) for b in batches),
                 sum(int((b.perc_codes >= 0).sum()) for b in batches), sum(b.n_real for b in batches),
                 sum(b.tokens.numel() for b in batches)]
        wsum, ntgt, tailw, nperc, nreal, nslots = D.all_sum(local, self.info)
        denom = wsum if self.cfg.loss.normalize == "weight" else ntgt
        stats = {"weight_sum": wsum, "targets": ntgt, "tail_ratio": tailw / wsum if wsum else 0.0,
                 "perc_positions": nperc, "tokens": nreal, "fill": nreal / nslots if nslots else 0.0}
        return StepTotals(ntp=denom, perc=nperc, scale=float(self.info.world)), stats

    def train_step(self, step: int, logs: Logs) -> Iterator[Update]:
        """Yield every micro-batch's update (the last one applies); fills ``logs`` with the step's metrics
        (``perc`` is meaningful only when ``perc_positions`` > 0)."""
        self._step_start = time.perf_counter()
        self._last = logs
        batches = self.batcher.load(self.batcher.next_plan())
        self.batches = batches
        totals, stats = self._totals(batches)
        lr = self.sched.get_last_lr()[0]
        sums = [0.0, 0.0]  # this rank's NTP and perceptual loss sums

        def reduced() -> dict[str, float]:
            ntp_sum, perc_sum = D.all_sum(sums, self.info)
            ntp = ntp_sum / max(totals.ntp, 1e-12)
            perc = perc_sum / max(totals.perc, 1.0)
            total = ntp + (self.cfg.perceptual.weight * perc if self.objective.perceptual is not None else 0.0)
            logs.update(loss=total, ntp=ntp, perc=perc)
            return {"loss": total}

        clip = self.cfg.optim.grad_clip
        for m, b in enumerate(batches):
            b = b.to(self.info.device)
            last = m == len(batches) - 1
            with D.grad_sync(self.model, self.info, enabled=last):
                loss, ntp_s, perc_s = self.model(b.tokens, b.targets, b.weights, b.perc_codes, b.segment_ids, totals)
                sums[0] += float(ntp_s)
                sums[1] += float(perc_s)
                # The loop back-propagates this before the generator resumes, i.e. inside grad_sync.
                yield Update(loss, self.opt, clip=clip, grad_norm_key="grad_norm", apply=last, reduced_loss=reduced)
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        logs.update(tail_ratio=stats["tail_ratio"], lr=lr, tokens=stats["tokens"], fill=stats["fill"],
                    perc_positions=stats["perc_positions"])
        self._step_end = time.perf_counter()  # the loop has applied the last update when the body resumes here

    def evaluate(self, step: int) -> Record:
        return {} if self.evaluator is None else self.evaluator(self.model, self.autocast())

    def log_fields(self) -> Record:
        """The last step's record fields beyond the loop's averages (the decoder logs every step)."""
        logs, now = self._last, time.perf_counter()
        dt = self._step_end - self._step_start
        # A step without image positions has no perceptual value (logged as null, not as a misleading 0).
        rec: Record = {"perc": logs["perc"] if logs.get("perc_positions", 0) > 0 else None,
                       "tokens": int(logs.get("tokens", 0)), "perc_positions": int(logs.get("perc_positions", 0)),
                       "tokens_per_s": logs.get("tokens", 0) / max(dt, 1e-9), "step_s": dt,
                       "epoch": self.batcher.rows.sampler.epoch, "elapsed_s": now - self.started}
        if self.cfg.log.sample_ids:
            ids = D.all_gather_object([s for b in self.batches for s in b.sample_ids], self.info)
            rec["samples"] = [s for r in ids for s in r]
        return rec

    def state_dict(self) -> dict[str, StateValue]:
        return {"data": self.batcher.state_dict()}

    def load_state_dict(self, state: Mapping[str, StateValue]) -> None:
        data = state["data"]
        if isinstance(data, dict):
            self.batcher.load_state_dict(data)
