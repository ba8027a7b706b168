"""One check for a device name given by a user (CLI flag, ``aromni.load(device=...)``, a training config)."""

from __future__ import annotations

import torch

from aromni.errors import InputError

_HINT = "use cpu, cuda or cuda:N (mps on Apple machines)"


def resolve_device(spec: str | torch.device | int | None) -> torch.device:
    """``spec`` as a ``torch.device`` this machine really has (``None`` = CPU).

    Raises :class:`InputError` naming the device and what to pass instead: for a name torch does not know
    (``"foo"``), for ``meta`` (it holds no data, so nothing can run on it), and for a CUDA device, CUDA index or
    MPS that this machine lacks. Checking here, before any weights are read, turns what would be a torch
    ``AssertionError``/``RuntimeError`` deep inside loading into one line.
    """
    if spec is None:
        return torch.device("cpu")
    if isinstance(spec, bool) or not isinstance(spec, (str, torch.device, int)):
        raise InputError(f"device must be a string such as 'cpu' or 'cuda', got {type(spec).__name__} {spec!r}",
                         _HINT)
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"{spec!r} is not a device", _HINT) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "meta":
        raise InputError("device 'meta' holds no data, so nothing can run on it", "use cpu or cuda")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {str(spec)!r}: CUDA is not available on this machine",
                             "use cpu, or a CUDA build of torch on a machine with an NVIDIA GPU")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise InputError(f"device {str(spec)!r}: this machine has {n} CUDA device(s)",
                             f"use cuda:0 .. cuda:{n - 1}")
        return dev
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError(f"device {str(spec)!r}: MPS (Apple GPU) is not available on this machine", "use cpu")
        return dev
    raise InputError(f"device {str(spec)!r}: {dev.type} devices are not supported", _HINT)
