"""Averaging the last N checkpoints of a run (OmniVIVO §4: "averages the last five checkpoints for stability").

Works on any run of the loop core: it reads ``model.safetensors`` of the step directories in
``OUT/checkpoints/step-N`` (:mod:`aromni.training.checkpoint`), keeps the tensors a key filter selects (e.g. a
recipe's trainable tensors), and returns their arithmetic mean, accumulated in float64 and cast back to each
tensor's dtype. Non-floating tensors (counters, indices) cannot be averaged: they are taken from the newest
checkpoint unchanged.

Fewer checkpoints than asked is an error (:class:`CheckpointError` saying how many there are), never a silent
average over fewer: the number averaged is part of the recipe. ``select`` narrows which step directories count
(e.g. only the scheduled ones, so a checkpoint written on an interruption does not shift the window).

:func:`save_average` writes the result as one safetensors file, atomically, with the averaged step directories in
its metadata.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file

from aromni.errors import CheckpointError, InputError
from aromni.training.checkpoint import CHECKPOINTS, STEP_DIR, list_checkpoints, read_safetensors
from aromni.training.loop import MODEL
from aromni.utils.io import atomic_path

KeyFilter = Callable[[str], bool]


def checkpoint_step(path: Path) -> int:
    """The step of a ``step-N`` directory."""
    m = STEP_DIR.match(path.name)
    if m is None:
        raise CheckpointError(f"{path}: not a step-N checkpoint directory")
    return int(m.group(1))


def last_checkpoints(out: str | Path, n: int, *, select: Callable[[int], bool] | None = None) -> list[Path]:
    """The newest ``n`` step directories of the run in ``out`` (those whose step ``select`` accepts), oldest
    first; :class:`CheckpointError` when there are fewer."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"the number of checkpoints to average must be a positive integer, got {n!r}")
    found = [p for p in list_checkpoints(Path(out) / CHECKPOINTS) if select is None or select(checkpoint_step(p))]
    if len(found) < n:
        which = "checkpoints" if select is None else "checkpoints of the schedule"
        raise CheckpointError(f"{Path(out) / CHECKPOINTS}: {len(found)} {which}, fewer than the {n} to average",
                              "average fewer, or keep more checkpoints (keep_last) and train on")
    return found[-n:]


def average_checkpoints(dirs: Sequence[Path], *, keys: KeyFilter | None = None) -> dict[str, torch.Tensor]:
    """The mean over ``dirs`` of the tensors of their ``model.safetensors`` that ``keys`` selects (all: ``None``).

    Returns:
        ``{key: tensor}`` with each tensor's shape and dtype; floating tensors are the arithmetic mean.

    Raises:
        CheckpointError: no directory, a filter selecting nothing, or checkpoints that disagree on the selected
            keys, shapes or dtypes (naming the first).
    """
    if not dirs:
        raise CheckpointError("no checkpoints to average", "pass at least one step directory")
    total: dict[str, torch.Tensor] = {}
    newest: dict[str, torch.Tensor] = {}
    for i, d in enumerate(dirs):
        state = {k: v for k, v in read_safetensors(Path(d) / MODEL).items() if keys is None or keys(k)}
        if i == 0:
            if not state:
                raise CheckpointError(f"{d / MODEL}: the key filter selects no tensor", "check the filter")
            newest = state
            total = {k: v.double() for k, v in state.items() if v.is_floating_point()}
            continue
        _check_same(newest, state, Path(d) / MODEL)
        for k, acc in total.items():
            acc += state[k].double()
        newest = state
    return {k: (total[k] / len(dirs)).to(v.dtype) if k in total else v for k, v in newest.items()}


def _check_same(ref: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: Path) -> None:
    if set(ref) != set(state):
        diff = sorted(set(ref) ^ set(state))
        raise CheckpointError(f"{source}: holds other tensors than the checkpoints before it (first {diff[0]!r})",
                              "average checkpoints of one run with one model config")
    for k, v in ref.items():
        if state[k].shape != v.shape or state[k].dtype != v.dtype:
            raise CheckpointError(f"{source}: {k} is {state[k].dtype} {tuple(state[k].shape)}, the checkpoints "
                                  f"before it {v.dtype} {tuple(v.shape)}", "average checkpoints of one run")


def average_last(out: str | Path, n: int, *, keys: KeyFilter | None = None,
                 select: Callable[[int], bool] | None = None) -> tuple[dict[str, torch.Tensor], list[Path]]:
    """:func:`average_checkpoints` over :func:`last_checkpoints` (``out``, ``n``, ``select``); returns the
    average and the directories averaged."""
    dirs = last_checkpoints(out, n, select=select)
    return average_checkpoints(dirs, keys=keys), dirs


def save_average(path: str | Path, state: dict[str, torch.Tensor], sources: Sequence[Path], *,
                 overwrite: bool = False) -> None:
    """Write ``state`` to the safetensors file ``path`` atomically; metadata ``averaged_from`` lists the step
    directories. An existing file is refused unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists", "choose another path or pass overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"averaged_from": json.dumps([str(p) for p in sources])}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=meta)


def prefix_filter(prefix: str) -> KeyFilter:
    """A key filter selecting the keys that start with ``prefix`` (e.g. ``"vivo."``, a recipe's module)."""
    return lambda key: key.startswith(prefix)
