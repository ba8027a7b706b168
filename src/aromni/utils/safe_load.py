"""Loading PyTorch pickle files safely (house rule 4): ``torch.load(..., weights_only=True)`` only, with every
failure a user can cause (missing file, garbage bytes, a pickle holding arbitrary Python objects) turned into a
:class:`~aromni.errors.CheckpointError` naming the file and the fix.

:func:`load_weights_only` reads any weights-only file (a tensor, a dict of tensors and plain values);
:func:`load_pth` reads a state dict (unwrapping a training checkpoint's ``"model"`` entry).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from aromni.errors import CheckpointError


def load_weights_only(path: Path, *, mmap: bool = False) -> object:
    """``torch.load(path, map_location="cpu", weights_only=True)`` (memory-mapped with ``mmap`` where the file
    format allows) with every failure turned into a :class:`CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing", "the checkpoint is incomplete; download or export it again")
    try:
        if not mmap:
            return torch.load(path, map_location="cpu", weights_only=True)
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            # Legacy (pre-zipfile) serialisation cannot be memory-mapped; read it into memory instead.
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" in str(e).lower():  # weights_only met a class / function reference it will not import
            raise CheckpointError(
                f"{path}: holds arbitrary pickled Python objects, not just tensors, so it was not loaded "
                f"({_global_name(e)})",
                "only load files you trust; re-save the weights as a plain state dict of tensors") from None
        raise _unreadable(path, e) from None
    except Exception as e:  # garbage bytes make the unpickler fail in many ways (IndexError, EOFError, ...)
        raise _unreadable(path, e) from None


def load_pth(path: Path) -> dict[str, object]:
    """A state dict from ``path`` (:func:`load_weights_only`, memory-mapped); a training checkpoint that wraps it
    in ``{"model": {...}}`` is unwrapped. Anything but a dict raises :class:`CheckpointError`."""
    state = load_weights_only(path, mmap=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict) and not any(
            isinstance(v, torch.Tensor) for v in state.values()):
        state = state["model"]  # a training checkpoint that wraps the state dict
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors",
                              "save the model's state_dict()")
    return state


def _unreadable(path: Path, e: BaseException) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})",
                           "the file is truncated or corrupt; download or export it again")


def _global_name(e: BaseException) -> str:
    for line in str(e).splitlines():
        if "Unsupported global" in line or "GLOBAL" in line:
            return line.strip()
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
