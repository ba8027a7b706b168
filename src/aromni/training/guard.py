"""Stopping a diverged run: a loss (or gradient norm) that is nan / inf ends training with a clear error.

The training loop (:class:`~aromni.training.loop.TrainLoop`, which runs the decoder, VQGAN, codec and judge
recipes) calls :func:`check_finite` on the step's loss before the optimizer applies it, and
:func:`check_weights` (the decoder trainer: its rank-reduced equivalent) before a checkpoint or an export is
written, so a diverged run never overwrites its last good checkpoint with nan weights and never exports a broken
model. The error names the step, the last good checkpoint and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from aromni.errors import TrainingDivergedError


def diverged(what: str, step: int, checkpoint: str | Path | None, *, lr_key: str = "lr", lr: float | None = None,
             resumable: bool = True, note: str = "", or_else: str = "") -> TrainingDivergedError:
    """The error for a run that diverged at ``step`` (``what``: e.g. ``"loss became nan"``).

    ``checkpoint``: the last good checkpoint (``None``: none was written); ``resumable``: whether a relaunch with
    a lower ``lr_key`` resumes from it (else the hint says to start a new run), ``or_else`` then follows it;
    ``note`` is appended to the problem.
    """
    where = f"the last good checkpoint is {checkpoint}" if checkpoint is not None else "no checkpoint was written"
    now = f" (now {lr:g})" if lr is not None else ""
    if checkpoint is not None and resumable:
        fix = f"lower {lr_key}{now} and relaunch to resume from that checkpoint" + (f", {or_else}" if or_else else "")
    else:
        fix = f"lower {lr_key}{now} and start a new run"
    return TrainingDivergedError(f"training diverged: {what} at step {step}; {where}" + (f"; {note}" if note else ""),
                                 fix)


def check_finite(values: Mapping[str, float | torch.Tensor], step: int, checkpoint: str | Path | None,
                 **kw: str | float | bool | None) -> None:
    """Raise :func:`diverged` (``kw`` goes to it) for the first of ``values`` (``{"loss": ..., "gradient
    norm": ...}``) that is not finite."""
    for name, v in values.items():
        x = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
        if not math.isfinite(x):
            raise diverged(f"{name} became {x}", step, checkpoint, **kw)


def weights_finite(params: Iterable[torch.Tensor]) -> bool:
    """Whether every parameter holds finite numbers only (one device sync)."""
    flags = [torch.isfinite(p.detach()).all() for p in params if p.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def check_weights(params: Iterable[torch.Tensor], step: int, checkpoint: str | Path | None, **kw: str | float | bool | None) -> None:
    """Raise :func:`diverged` (``kw`` goes to it) when a parameter holds nan / inf (call before saving or
    exporting)."""
    if not weights_finite(params):
        raise diverged("the weights stopped being finite numbers", step, checkpoint, **kw)
