"""The run of the pretrain and SFT recipes around the decoder's step.

``Trainer(cfg).fit()`` does, top to bottom: join the process group (torchrun) -> plan the data -> build the model
(scratch / bundle, vocabulary extension, ablation switches) and the perceptual head -> resume the latest
checkpoint if any -> wrap (DDP / FSDP2) -> AdamW + linear schedule -> steps -> checkpoints -> export a bundle.

One optimizer step is :class:`~aromni.training.recipes.decoder.DecoderRecipe` run by the package's one loop
(:meth:`aromni.training.loop.TrainLoop.train_step`): micro-batches forwarded and back-propagated (gradient sync
only on the last), clipped, AdamW and the schedule step.

The loop runs the steps (:meth:`~aromni.training.loop.TrainLoop.run`): metrics (one record per step, the
held-out evaluation merged in), progress, Ctrl-C, and the checkpoints, saved and resumed through
:class:`StepDirStore`, the loop's :class:`~aromni.training.loop.CheckpointStore` for the
``OUT/checkpoints/step-N`` directories.

A step whose loss (summed over ranks) or gradient norm is not finite (nan / inf: the run diverged) stops the run
with a :class:`~aromni.errors.TrainingDivergedError` before the optimizer applies it; the weights are checked
again before every checkpoint and the export, so neither is ever written from a diverged model and the last
checkpoint stays a good one to resume from.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from aromni.errors import AromniError, CheckpointError, ConfigError, InputError, TrainingDivergedError
from aromni.training import checkpoint as ckpt
from aromni.training import distributed as D
from aromni.training.config import TrainConfig
from aromni.training.data.pipeline import build_batcher, data_layout, describe
from aromni.training.evaluate import Evaluator
from aromni.training.export import export_bundle
from aromni.training.guard import diverged
from aromni.training.loop import LoopConfig, Record, TrainLoop
from aromni.training.losses import TrainingObjective
from aromni.training.metrics import MetricsLogger
from aromni.training.model_init import build_decoder
from aromni.training.optim import build_optimizer, build_scheduler
from aromni.training.perceptual import PerceptualHead, load_table
from aromni.training.recipes.decoder import DecoderRecipe
from aromni.utils.io import JSONValue, atomic_write_json
from aromni.vocab.layout import VocabLayout


class Trainer:
    """Runs one training configuration. See the module docstring."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.step = 0

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Build everything :meth:`fit` needs (process group, data, model, optimizer; resumes if a checkpoint exists)."""
        cfg = self.cfg
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"out must name a run directory, but {self.out} is an existing file",
                              "choose another out (checkpoints, metrics and the bundle go there)")
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        self.info = D.init_distributed(cfg.dist.strategy, cfg.dist.backend, cfg.device)
        torch.manual_seed(cfg.seed)
        layout = data_layout(cfg.data)
        self.batcher, report = build_batcher(cfg.data, cfg.loss, cfg.perceptual, layout,
                                             grad_accum=cfg.optim.grad_accum, rank=self.info.rank,
                                             world=self.info.world)
        notes = self._build_objective(layout)
        self.store = StepDirStore(self)
        resume = self._resume_path()
        if resume is not None:  # the weights go in before DDP / FSDP wraps the model, the rest through the loop
            self.store.load_model(resume)
        self.model = D.wrap(self.objective, self.info)
        self.opt = build_optimizer(self.objective, cfg.optim)
        self.sched = build_scheduler(self.opt, cfg.optim)
        self.evaluator = Evaluator(cfg, self.layout, self.info) if cfg.eval.every > 0 else None
        self.recipe = DecoderRecipe(cfg, self.info, self.objective, self.model, self.opt, self.sched, self.batcher,
                                    self.evaluator, self._autocast)
        steps = cfg.optim.max_steps
        loop_cfg = LoopConfig(out=self.out, steps=steps, checkpoint_every=cfg.checkpoint.every or steps + 1,
                              eval_every=cfg.eval.every, eval_in_record=True, precision=cfg.precision,
                              lr_key="optim.lr", lr=cfg.optim.lr, autocast_device=self.info.device.type,
                              diverged_note="no bundle was exported",
                              diverged_or_else="or from an earlier one with checkpoint.resume=DIR")
        self.last_record: Record = {}
        self.loop = TrainLoop(self.recipe, loop_cfg, store=self.store, on_record=self._on_record)
        if resume is not None:
            self.loop.load(resume)
            self.step = self.loop.step
        self.logger = MetricsLogger(self.out, resume_step=self.step if resume else None, total=cfg.optim.max_steps,
                                    tensorboard=cfg.log.tensorboard, progress=cfg.log.progress,
                                    enabled=self.info.is_main, initial=self.step)
        self.logger.message(report.line())
        n_params = sum(p.numel() for p in self.objective.parameters())
        self.logger.message(f"model: {n_params / 1e6:.2f} M parameters, {notes}; {self.info.world} process(es), "
                            f"strategy {self.info.strategy}, device {self.info.device}"
                            + (f"; resumed from {resume} at step {self.step}" if resume else ""))
        if self.info.is_main:
            atomic_write_json(self.out / "train_config.json",
                              {"config": cfg.to_dict(), "data": describe(report), "model": notes})

    def _build_objective(self, data_layout: VocabLayout) -> dict[str, str]:
        """The decoder (scratch / loaded / extended) and the perceptual head, on the device."""
        cfg = self.cfg
        decoder, self.layout, notes = build_decoder(cfg.model, data_layout, seed=cfg.seed)
        perc = None
        if cfg.perceptual.enabled:
            if not cfg.perceptual.table:
                raise ConfigError("perceptual.table is not set",
                                  "point it at the image tokenizer (or bundle), or set perceptual.enabled=false")
            table = load_table(cfg.perceptual.table)
            if table.shape[0] != self.layout.image.size:
                raise ConfigError(f"perceptual table has {table.shape[0]} rows, the layout {self.layout.image.size} "
                                  "image codes", "use the image tokenizer the shards were built with")
            perc = PerceptualHead(decoder.cfg.dim, table, cfg.perceptual.reduction)
            if cfg.model.init_from and ckpt.load_perceptual(perc, cfg.model.init_from):
                notes["perceptual"] = f"W_h from {cfg.model.init_from}"
        self.objective = TrainingObjective(decoder, perc, cfg.perceptual.weight, cfg.loss.chunk_size,
                                           cfg.loss.fused_ce, compiled=cfg.model.compile)
        self.objective.to(self.info.device)
        return notes

    def _resume_path(self) -> Path | None:
        mode = self.cfg.checkpoint.resume
        root = self.out / "checkpoints"
        if mode == "none":
            if self.info.is_main and (ckpt.latest_checkpoint(root) or (self.out / "metrics.jsonl").exists()):
                raise InputError(f"{self.out} already holds a training run and checkpoint.resume is 'none'",
                                 "choose another out directory, delete it, or resume (checkpoint.resume=auto)")
            return None
        if mode == "auto":
            if self.info.is_main:
                ckpt.remove_partial(root)
            D.barrier(self.info)
            return ckpt.latest_checkpoint(root)
        return Path(mode)

    # ------------------------------------------------------------------ one step
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.precision == "bf16":
            return torch.autocast(self.info.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ divergence
    def _diverged(self, what: str, step: int) -> TrainingDivergedError:
        """The error that stops a diverged run, naming the checkpoint to resume from."""
        # The last checkpoint may already hold blown-up (if finite) weights, hence the earlier ones.
        return diverged(what, step, ckpt.latest_checkpoint(self.out / "checkpoints"), lr_key="optim.lr",
                        lr=self.cfg.optim.lr, note="no bundle was exported",
                        or_else="or from an earlier one with checkpoint.resume=DIR")

    def _check_weights(self, step: int) -> None:
        """Refuse to save or export weights holding nan / inf (each rank checks its parameters, then all agree)."""
        bad = [torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).logical_not().any()
               for p in self.objective.parameters()]
        n_bad = D.all_sum([float(torch.stack(bad).sum()) if bad else 0.0], self.info)[0]
        if n_bad:
            raise self._diverged("the weights stopped being finite numbers", step)

    # ------------------------------------------------------------------ the run
    def fit(self) -> dict[str, JSONValue]:
        """Train to ``optim.max_steps`` (resuming if a checkpoint exists) and export. Returns the last record."""
        try:
            self.setup()
        except BaseException:
            if hasattr(self, "info"):
                D.shutdown(self.info)
            raise
        finished = False
        try:
            ck = self.cfg.checkpoint
            self.loop.run(until=ck.stop_after or None, logger=self.logger, resume=False)
            self.step = self.loop.step
            if self.step < self.cfg.optim.max_steps and not self.loop.stop_requested:
                self.logger.message(f"stopping after step {self.step} (checkpoint.stop_after); relaunch to resume")
            if self.cfg.export.enabled and self.step >= self.cfg.optim.max_steps:
                self._export()
            finished = True
        finally:
            self.logger.close()
            D.shutdown(self.info, barrier=finished)
        return self.last_record if self.info.is_main else {}

    def _on_record(self, rec: Record) -> None:
        """Keep the step's record; every ``log.every`` steps print it as a line, when there is no progress bar."""
        self.last_record = rec
        if self.cfg.log.every and self.loop.step % self.cfg.log.every == 0 and not self.logger.has_bar:
            val = f" val {rec['val_loss']:.4f}" if "val_loss" in rec else ""
            perc = "-" if rec["perc"] is None else f"{rec['perc']:.4f}"
            self.logger.message(f"step {rec['step']}: loss {rec['loss']:.4f} ntp {rec['ntp']:.4f} perc {perc}"
                                f"{val} lr {rec['lr']:.2e} {rec['tokens_per_s']:.0f} tok/s")

    def _export(self) -> None:
        self._check_weights(self.step)
        state = ckpt.full_model_state(self.objective, self.info)
        if self.info.is_main:
            export_bundle(self.out / "bundle", self.objective.decoder.cfg, self.layout, state, self.cfg.export)
            ckpt.save_perceptual(self.out / "bundle", state)
            self.logger.message(f"bundle written to {self.out / 'bundle'}")
        D.barrier(self.info)


class StepDirStore:
    """The decoder's :class:`~aromni.training.loop.CheckpointStore`: ``OUT/checkpoints/step-N`` directories
    (:mod:`aromni.training.checkpoint`: the decoder in aromni format, ``perceptual.safetensors``,
    ``trainer_state.pt``; keep-last-N; FSDP states gathered to rank 0, which writes).

    :meth:`load_model` puts a checkpoint's weights into the unwrapped model before DDP / FSDP wraps it; the
    loop's :meth:`load` then restores the optimizer, the schedule (under this run's hyper-parameters), the data
    position (returned as the recipe's state) and this rank's RNG."""

    def __init__(self, trainer: Trainer):
        self.t = trainer
        self.root = trainer.out / "checkpoints"
        self._pending: dict[str, ckpt.StateValue] | None = None  # trainer_state.pt read by load_model

    def latest(self) -> Path | None:
        return ckpt.latest_checkpoint(self.root)

    def last_good(self) -> Path | None:
        # The last checkpoint may already hold blown-up (if finite) weights, hence or_else's earlier ones.
        return ckpt.latest_checkpoint(self.root)

    def load_model(self, path: Path) -> None:
        model_state, self._pending = ckpt.load_checkpoint(path)
        ckpt.load_model_state(self.t.objective, model_state, path)

    def load(self, path: Path) -> dict[str, ckpt.StateValue]:
        state = self._pending if self._pending is not None else ckpt.load_checkpoint(path)[1]
        self._pending = None
        try:
            return self._restore(state)
        except AromniError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise CheckpointError(f"{path / ckpt.TRAINER_STATE}: damaged training state ({type(e).__name__}: "
                                  f"{e})", "resume from an earlier checkpoint (checkpoint.resume=DIR) or start "
                                  "a new run") from None

    def _restore(self, state: dict[str, ckpt.StateValue]) -> dict[str, ckpt.StateValue]:
        t = self.t
        if int(state["rows_per_step"]) != t.batcher.rows_per_step:
            raise ConfigError(f"the checkpoint was trained with {state['rows_per_step']} rows per step, this run has "
                              f"{t.batcher.rows_per_step}", "keep micro_batch x grad_accum x processes fixed")
        ckpt.load_optimizer_state(t.objective, t.opt, state["optimizer"], t.info)
        t.sched.load_state_dict(state["scheduler"])
        # This run's hyper-parameters win over the saved ones (identical when the config is unchanged), so a
        # relaunch with a lower optim.lr after a divergence really trains with it. Groups: decayed, then not.
        optim = t.cfg.optim
        for group, wd in zip(t.opt.param_groups, (optim.weight_decay, 0.0)):
            group.update(initial_lr=optim.lr, betas=(optim.betas[0], optim.betas[1]), eps=optim.eps, weight_decay=wd)
        t.sched.base_lrs = [optim.lr for _ in t.opt.param_groups]
        # Re-evaluate this run's schedule at the restored step (identical when the config is unchanged; correct
        # when optim.lr, optim.max_steps or the warmup changed between runs).
        for group, base in zip(t.opt.param_groups, t.sched.base_lrs):
            group["lr"] = base * t.sched.lr_lambdas[0](t.sched.last_epoch)
        t.sched._last_lr = [g["lr"] for g in t.opt.param_groups]
        rngs = state["rng"]
        return {"step": int(state["step"]), "train_seconds": 0.0, "window": {}, "window_steps": 0,
                "recipe": {"data": state["data"]}, "rng": rngs[t.info.rank] if len(rngs) == t.info.world else rngs[0]}

    def save(self, step: int, state: dict[str, ckpt.StateValue]) -> Path | None:
        """Gather (every rank) and write (rank 0) ``step-N``; refused when the weights are not finite."""
        t = self.t
        t._check_weights(step)
        model_state = ckpt.full_model_state(t.objective, t.info)
        osd = ckpt.full_optimizer_state(t.objective, t.opt, t.info)
        rngs = D.all_gather_object(state["rng"], t.info)
        path = None
        if t.info.is_main:
            trainer_state = {"step": step, "optimizer": osd, "scheduler": t.sched.state_dict(), "rng": rngs,
                             "data": state["recipe"]["data"],
                             "rows_per_step": t.batcher.rows_per_step, "world": t.info.world,
                             "config": json.dumps(t.cfg.to_dict())}
            path = ckpt.save_checkpoint(self.root, step, decoder_cfg=t.objective.decoder.cfg, layout=t.layout,
                                        model_state=model_state, trainer_state=trainer_state,
                                        keep_last=t.cfg.checkpoint.keep_last)
        D.barrier(t.info)
        return path
