"""The one optimisation loop of the package: a :class:`TrainLoop` runs any :class:`TrainRecipe` to its last step.

A recipe (``training/recipes/``: VQGAN, codec, the toy-world judges) says *what* one step computes; the loop
does everything around it, the same way for every recipe:

- the step's :class:`Update` s (one per optimizer: a GAN step yields the discriminator's and the generator's) are
  back-propagated, clipped and applied, with autocast (``precision="bf16"``) around the forward code;
- a loss or gradient norm that is not finite stops the run before the optimizer applies it
  (:mod:`aromni.training.guard`), and non-finite weights are never checkpointed; a data-parallel recipe hands
  the loop its loss reduced across ranks (:attr:`Update.reduced_loss`), checked after the backward passes, so
  every rank takes the same decision;
- gradient accumulation under DDP / FSDP: a recipe yields each micro-batch's :class:`Update` from inside its
  gradient-sync context (``no_sync`` on all but the last micro-batch); the loop back-propagates it before the
  recipe's code resumes, so forward and backward both run inside that context;
- metrics: the step logs are averaged over ``log_every`` steps into ``metrics.jsonl`` (+ TensorBoard, + a tqdm
  bar) through :class:`~aromni.training.metrics.MetricsLogger`, with the recipe's own fields
  (:meth:`TrainRecipe.log_fields`); the recipe's held-out evaluation runs every ``eval_every`` steps and at the
  last step, logged as a record of its own or (``eval_in_record``) merged into the step's record;
- checkpoints, through a :class:`CheckpointStore` (the one save / resume path): every ``checkpoint_every``
  steps (and when the run stops) a step directory ``out/checkpoints/step-N`` in the package's one checkpoint
  format (:mod:`aromni.training.checkpoint`), written atomically, the newest ``keep_last`` kept. The default
  store (:class:`LoopCheckpointStore`) writes ``model.safetensors`` (every module's weights, keys prefixed
  ``<module>.``), ``trainer_state.pt`` (step, optimizers, RNG, the recipe's data position and other state, the
  unfinished log window; plain tensors and values, read with ``weights_only=True``) and ``trainer.json`` (step
  and config, for people and the CLI); the decoder trainer's store writes its decoder in aromni format instead.

Resuming loads all of it, so a run killed at any point and resumed is bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Protocol

import torch
from safetensors.torch import save_file
from torch import nn

from aromni.errors import AromniError, CheckpointError, TrainingDivergedError
from aromni.training.checkpoint import (
    CHECKPOINTS,
    TRAINER_STATE,
    StateValue,
    capture_rng,
    check_state,
    read_safetensors,
    read_weights_only,
    restore_rng,
    run_checkpoint,
    write_state,
    write_step_dir,
)
from aromni.training.guard import check_finite, check_weights
from aromni.training.metrics import MetricsLogger
from aromni.utils.io import JSONValue, atomic_write_json

#: Files of a loop recipe's step directory (beside ``trainer_state.pt``).
MODEL, META = "model.safetensors", "trainer.json"
#: Where runs before the one-format change kept their single checkpoint (``state.pt`` for ``trainer_state.pt``);
#: still read, so those runs resume.
LEGACY_DIR, LEGACY_STATE = "checkpoint", "state.pt"
Logs = dict[str, float]
#: One line of ``metrics.jsonl``.
Record = dict[str, JSONValue]


@dataclass
class Update:
    """One optimizer update of a step: back-propagate ``loss``, clip to ``clip`` (0: no clipping), step.

    ``name`` names the loss in the divergence error (``"loss"``, ``"discriminator loss"``); with ``grad_norm_key``
    the (pre-clip) gradient norm is checked and logged under that key. Gradient accumulation: micro-batch
    updates with ``apply=False`` are only back-propagated (their gradients add up, so the recipe scales each
    loss by its share); the next update of the same optimizer with ``apply=True`` clips and steps.

    ``reduced_loss`` (data-parallel recipes): ``loss`` is then only this rank's part and is not checked before
    its backward; when the update is applied, after the backward passes and clipping, the loop calls it (on every
    rank: it may all-reduce) and checks the values it returns (``{"loss": summed over ranks}``) and then the
    gradient norm, so all ranks stop together. A recipe that needs a context around forward *and* backward
    (DDP ``no_sync``) yields the update from inside that context.
    """

    loss: torch.Tensor
    optimizer: torch.optim.Optimizer
    name: str = "loss"
    clip: float = 0.0
    grad_norm_key: str | None = None
    apply: bool = True
    reduced_loss: Callable[[], Mapping[str, float]] | None = None


class TrainRecipe(Protocol):
    """What a recipe gives the loop. ``train_step`` yields its updates in order and fills ``logs``."""

    def modules(self) -> Mapping[str, nn.Module]: ...

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]: ...

    def train_step(self, step: int, logs: Logs) -> Iterator[Update]: ...

    def evaluate(self, step: int) -> dict[str, float | int | str | None]: ...

    def log_fields(self) -> Record: ...

    def state_dict(self) -> dict[str, StateValue]: ...

    def load_state_dict(self, state: Mapping[str, StateValue]) -> None: ...


@dataclass
class LoopConfig:
    """How the loop runs a recipe (the recipe's own config maps onto these)."""

    out: Path | None  # None: no checkpoints or metrics (steps driven by hand)
    steps: int
    checkpoint_every: int
    log_every: int = 1
    eval_every: int = 0  # 0: no periodic evaluation (``eval_at_end`` still applies)
    eval_at_end: bool = False
    precision: str = "fp32"  # or "bf16" (autocast around the recipe's forward code)
    max_seconds: float = 0.0  # 0: no time limit; else stop (with a checkpoint) after this much training time
    progress: bool = True
    desc: str = "train"
    lr_key: str = "lr"  # for the divergence hint
    lr: float | None = None
    resumable: bool = True
    config: dict[str, StateValue] = field(default_factory=dict)  # written into trainer.json
    summed: tuple[str, ...] = ("restarted",)  # log keys summed over the ``log_every`` window instead of averaged
    autocast_device: str = ""  # "": cuda when available, else cpu
    keep_last: int = 2  # step directories kept (0: all)
    tensorboard: bool = False  # also write TensorBoard scalars
    eval_in_record: bool = False  # merge the evaluation into the step's record instead of a record of its own
    diverged_note: str = ""  # appended to the divergence error's problem
    diverged_or_else: str = ""  # follows the divergence error's resume hint


class CheckpointStore(Protocol):
    """Where and how a :class:`TrainLoop` keeps its checkpoints: the one resume path of the package.

    The loop hands :meth:`save` its run state (``step``, ``train_seconds``, ``rng``, ``recipe``, ``window``,
    ``window_steps``); the store writes it together with the weights and optimizer state of the objects it was
    built for, refusing non-finite weights. :meth:`load` restores those objects from a checkpoint directory and
    returns the run state for the loop to restore. Both implementations write the package's one format
    (``checkpoints/step-N``): :class:`LoopCheckpointStore` (VQGAN, codec, judges) and the decoder trainer's
    :class:`aromni.training.trainer.StepDirStore`."""

    def latest(self) -> Path | None: ...

    def load(self, path: Path) -> dict[str, StateValue]: ...

    def save(self, step: int, state: dict[str, StateValue]) -> Path | None: ...

    def last_good(self) -> Path | None: ...


def find_checkpoint(out: str | Path) -> Path | None:
    """The checkpoint a loop recipe's run in ``out`` resumes from: the newest ``checkpoints/step-N``, else a
    single ``checkpoint/`` directory written before the one-format change (``None``: none)."""
    found = run_checkpoint(out)
    legacy = Path(out) / LEGACY_DIR
    if found is None and (legacy / LEGACY_STATE).is_file():
        return legacy
    return found


def checkpoint_meta(out: str | Path) -> dict[str, StateValue] | None:
    """``trainer.json`` (step and config) of the checkpoint a run in ``out`` resumes from (``None``: none)."""
    path = find_checkpoint(out)
    if path is None or not (path / META).is_file():
        return None
    return json.loads((path / META).read_text())


class LoopCheckpointStore:
    """The loop recipes' store: ``out/checkpoints/step-N`` (see the module docstring), the newest ``keep_last``
    kept. ``check(step, last_good)`` refuses to save non-finite weights (raises)."""

    def __init__(self, out: Path, recipe: TrainRecipe, config: Mapping[str, StateValue],
                 check: Callable[[int, Path | None], None], keep_last: int = 2):
        self.out, self.recipe, self.config, self.check, self.keep_last = out, recipe, config, check, keep_last

    def latest(self) -> Path | None:
        return find_checkpoint(self.out)

    def last_good(self) -> Path | None:
        return self.latest()

    def save(self, step: int, state: dict[str, StateValue]) -> Path:
        self.check(step, self.last_good())
        weights = {f"{name}.{k}": v.detach().contiguous() for name, m in self.recipe.modules().items()
                   for k, v in m.state_dict().items()}
        full = {"step": step, "train_seconds": state["train_seconds"], "rng": state["rng"],
                "optimizers": {k: o.state_dict() for k, o in self.recipe.optimizers().items()},
                "recipe": state["recipe"], "window": state["window"], "window_steps": state["window_steps"]}

        def fill(tmp: Path) -> None:
            save_file(weights, str(tmp / MODEL))
            write_state(tmp, full)
            atomic_write_json(tmp / META, {"step": step, "train_seconds": state["train_seconds"],
                                           "config": dict(self.config)})

        return write_step_dir(self.out / CHECKPOINTS, step, self.keep_last, fill)

    def load(self, path: Path) -> dict[str, StateValue]:
        weights = read_safetensors(path / MODEL)
        state = read_weights_only(path / (LEGACY_STATE if path.name == LEGACY_DIR else TRAINER_STATE))
        # A module (and optimizer) the checkpoint lacks entirely was added by a resumable config change
        # (e.g. a GAN phase added to a run): it keeps its fresh initialisation. The first must be there.
        for i, (name, m) in enumerate(self.recipe.modules().items()):
            sub = {k.removeprefix(f"{name}."): v for k, v in weights.items() if k.startswith(f"{name}.")}
            if sub or i == 0:
                check_state(m.state_dict(), sub, str(path / MODEL))
                m.load_state_dict(sub, strict=True)
        for k, opt in self.recipe.optimizers().items():
            if k in state["optimizers"]:
                opt.load_state_dict(state["optimizers"][k])
        return state

    def saved_step(self) -> int | None:
        meta = checkpoint_meta(self.out)
        return None if meta is None else int(meta["step"])


class TrainLoop:
    """Runs ``recipe`` from its checkpoint (if any) to ``cfg.steps``; see the module docstring.

    ``store``: where checkpoints go and resume from (default: :class:`LoopCheckpointStore` on ``out/checkpoint``)."""

    def __init__(self, recipe: TrainRecipe, cfg: LoopConfig, *, after_save: Callable[[int], None] | None = None,
                 store: CheckpointStore | None = None, on_record: Callable[[Record], None] | None = None):
        self.recipe, self.cfg, self.after_save, self.on_record = recipe, cfg, after_save, on_record
        self.store: CheckpointStore = store if store is not None else LoopCheckpointStore(
            Path(cfg.out if cfg.out is not None else "."), recipe, cfg.config, self._check_weights, cfg.keep_last)
        self.step = 0
        self.train_seconds = 0.0
        self.window: Logs = {}
        self.window_steps = 0
        self.stop_requested = False
        self._saved: int | None = None  # step of the last checkpoint saved or loaded by this loop
        self._accumulating: set[int] = set()  # id() of optimizers holding micro-batch gradients

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self) -> Path | None:
        """The checkpoint to resume from (``None``: none)."""
        return self.store.latest()

    def _params(self) -> list[torch.Tensor]:
        return [p for m in self.recipe.modules().values() for p in m.parameters()]

    def _check_weights(self, step: int, last_good: Path | None) -> None:
        check_weights(self._params(), step, last_good, **self._diverged_kw())

    def _last_good(self) -> Path | None:
        if self.cfg.out is None and isinstance(self.store, LoopCheckpointStore):
            return None  # steps driven by hand: no checkpoint directory
        return self.store.last_good()

    def _diverged_kw(self) -> dict[str, str | float | bool | None]:
        return {"lr_key": self.cfg.lr_key, "lr": self.cfg.lr, "resumable": self.cfg.resumable,
                "note": self.cfg.diverged_note, "or_else": self.cfg.diverged_or_else}

    def save(self) -> Path | None:
        """Write a checkpoint through the store (refused when the weights are not finite)."""
        state: dict[str, StateValue] = {
            "step": self.step, "train_seconds": self.train_seconds, "rng": capture_rng(),
            "recipe": self.recipe.state_dict(), "window": dict(self.window), "window_steps": self.window_steps}
        path = self.store.save(self.step, state)
        self._saved = self.step
        if self.after_save is not None:
            self.after_save(self.step)
        return path

    def load(self, path: Path) -> None:
        """Restore every piece of state from checkpoint ``path`` (through the store)."""
        try:
            state = self.store.load(path)
            self.recipe.load_state_dict(state["recipe"])
            restore_rng(state["rng"])
            self.step, self.train_seconds = int(state["step"]), float(state["train_seconds"])
            self.window, self.window_steps = dict(state["window"]), int(state["window_steps"])
        except AromniError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise CheckpointError(f"{path}: damaged training state ({type(e).__name__}: "
                                  f"{' '.join(str(e).split())[:200]})",
                                  "start a new run, or restore the checkpoint directory") from None
        self._saved = self.step

    # ------------------------------------------------------------------ one step
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.precision == "bf16":
            device = self.cfg.autocast_device or ("cpu" if not torch.cuda.is_available() else "cuda")
            return torch.autocast(device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _apply(self, u: Update, logs: Logs) -> None:
        if u.reduced_loss is None:
            check_finite({u.name: u.loss}, self.step + 1, self._last_good(), **self._diverged_kw())
        if id(u.optimizer) not in self._accumulating:
            u.optimizer.zero_grad(set_to_none=True)
        u.loss.backward()
        if not u.apply:
            self._accumulating.add(id(u.optimizer))
            return
        self._accumulating.discard(id(u.optimizer))
        params = [p for g in u.optimizer.param_groups for p in g["params"]]
        checks: dict[str, float | torch.Tensor] = {}
        gn: torch.Tensor | None = None
        if u.clip > 0 or u.grad_norm_key:
            gn = torch.nn.utils.clip_grad_norm_(params, u.clip if u.clip > 0 else float("inf"))
            gn = gn.full_tensor() if hasattr(gn, "full_tensor") else gn  # FSDP2: a DTensor
        if u.reduced_loss is not None:
            checks.update(u.reduced_loss())  # every rank, the same values: the same decision
        if gn is not None:
            checks["gradient norm"] = gn
        try:
            check_finite(checks, self.step + 1, self._last_good(), **self._diverged_kw())
        except TrainingDivergedError:
            u.optimizer.zero_grad(set_to_none=True)
            raise
        if gn is not None and u.grad_norm_key:
            logs[u.grad_norm_key] = float(gn)
        u.optimizer.step()

    def train_step(self) -> Logs:
        """Run the recipe's step ``self.step`` (every update it yields); returns its logs."""
        logs: Logs = {}
        updates = self.recipe.train_step(self.step, logs)
        while True:
            with self._autocast():
                u = next(updates, None)
            if u is None:
                break
            self._apply(u, logs)
        self.step += 1
        return logs

    # ------------------------------------------------------------------ logging
    def _accumulate(self, logs: Logs) -> None:
        for k, v in logs.items():
            self.window[k] = self.window.get(k, 0.0) + float(v)
        self.window_steps += 1

    def _flush(self, seconds: float) -> Record:
        """The window's record: step logs averaged (``summed`` keys summed), the recipe's fields, speed."""
        n = max(1, self.window_steps)
        rec: Record = {"step": self.step}
        rec.update({k: (v if k in self.cfg.summed else v / n) for k, v in sorted(self.window.items())})
        rec.update(self.recipe.log_fields())
        rec.update(steps_per_s=self.window_steps / max(seconds, 1e-9), train_minutes=self.train_seconds / 60)
        self.window, self.window_steps = {}, 0
        return rec

    # ------------------------------------------------------------------ the loop
    def run(self, *, until: int | None = None, logger: MetricsLogger | None = None,
            resume: bool = True) -> dict[str, JSONValue]:
        """Train from the checkpoint (if any) to ``cfg.steps`` (or stop at step ``until`` with a checkpoint, as an
        interrupted run would). Returns the last evaluation (``{}`` if none).

        ``logger``: write records there (the caller opened it and closes it) instead of ``cfg.out``'s
        ``metrics.jsonl``; ``resume=False``: the caller has already restored the checkpoint (:meth:`load`)."""
        cfg = self.cfg
        if resume and (path := self.checkpoint_path()) is not None:
            self.load(path)
        end = cfg.steps if until is None else min(until, cfg.steps)
        own = logger is None
        if logger is None:
            logger = MetricsLogger(cfg.out, resume_step=self.step, total=cfg.steps, progress=cfg.progress,
                                   tensorboard=cfg.tensorboard, initial=self.step, desc=cfg.desc)
        last_eval: dict[str, JSONValue] = {}
        t_log = time.perf_counter()
        with self._graceful_interrupt(), contextlib.closing(logger) if own else contextlib.nullcontext():
            while self.step < end and not self.stop_requested:
                t0 = time.perf_counter()
                self._accumulate(self.train_step())
                self.train_seconds += time.perf_counter() - t0
                logger.advance()
                window_seconds = time.perf_counter() - t_log
                evaluation: dict[str, JSONValue] = {}
                if (cfg.eval_every > 0 and self.step % cfg.eval_every == 0) or (
                        self.step == cfg.steps and (cfg.eval_every > 0 or cfg.eval_at_end)):
                    with torch.no_grad():
                        evaluation = dict(self.recipe.evaluate(self.step))
                    last_eval = {"step": self.step, **evaluation}
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    record = self._flush(window_seconds)
                    if cfg.eval_in_record:
                        record.update(evaluation)
                    logger.log(record, advance=False)
                    if self.on_record is not None:
                        self.on_record(record)
                    t_log = time.perf_counter()
                if last_eval and last_eval["step"] == self.step and not cfg.eval_in_record:
                    logger.log(dict(last_eval), advance=False)
                out_of_time = cfg.max_seconds > 0 and self.train_seconds >= cfg.max_seconds
                if self.step % cfg.checkpoint_every == 0 or self.step == end or out_of_time:
                    self.save()
                if out_of_time:
                    break
            if self.stop_requested and self.ckpt_step() != self.step:
                self.save()
        return last_eval

    @contextlib.contextmanager
    def _graceful_interrupt(self) -> Iterator[None]:
        """First Ctrl-C: finish the current step, save, stop. Second Ctrl-C: stop at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            print("\nstopping after this step (Ctrl-C again to abort without saving)", file=sys.stderr)

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def ckpt_step(self) -> int | None:
        """The step of the latest checkpoint (``None``: none)."""
        if isinstance(self.store, LoopCheckpointStore):
            return self.store.saved_step()
        return self._saved

