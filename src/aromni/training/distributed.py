"""Process groups, model wrapping (DDP / FSDP2) and the collectives the trainer needs.

Launch with ``torchrun --nproc_per_node N -m aromni train ...``; a single process needs nothing. On CPU the
backend is gloo, on CUDA nccl. FSDP2 (``torch.distributed.fsdp.fully_shard``) shards every decoder block and
then the root (embeddings, final norm, LM head, perceptual head); checkpoints gather the full state on rank 0.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from aromni.errors import ConfigError, InputError
from aromni.utils.device import resolve_device as user_device

#: The type of an object sent between ranks (any picklable value; each rank gets back the same type).
T = TypeVar("T")


@dataclass
class DistInfo:
    """Where this process sits. ``strategy`` is ``"none"``, ``"ddp"`` or ``"fsdp"``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    strategy: str = "none"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; any other name must be a device this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return user_device(name)
    except InputError as e:
        raise ConfigError(f"device: {e.problem}", e.hint) from None


def init_distributed(strategy: str, backend: str, device: str) -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world <= 1:
        if strategy in ("ddp", "fsdp"):
            strategy = "none"  # a one-process run needs no wrapper; the same config works under torchrun
        return DistInfo(device=dev)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
    strategy = "ddp" if strategy in ("auto", "none") else strategy
    return DistInfo(rank=rank, world=world, local_rank=local, strategy=strategy, device=dev)


def shutdown(info: DistInfo, *, barrier: bool = False) -> None:
    """Leave the process group. ``barrier`` (after a run every rank finished) first waits for all ranks, so no
    rank tears its connections down while a peer still uses them: a gloo rank whose peer closed first could
    abort at exit ("terminate called without an active exception"; seen once under a loaded test suite). Never
    after an error: a rank that failed may never reach the barrier."""
    if info.active and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, info: DistInfo, block_attr: str = "decoder.layers") -> nn.Module:
    """DDP or FSDP2 around ``model`` (unchanged for a single process)."""
    if info.strategy == "none" or not info.active:
        return model
    if info.strategy == "ddp":
        import inspect

        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [info.device.index] if info.device.type == "cuda" else None
        # The perceptual table is a constant buffer, identical on every rank: no need to re-sync it every forward.
        if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters:
            return DDP(model, device_ids=ids, forward_sync_buffers=False)
        return DDP(model, device_ids=ids, broadcast_buffers=False)
    if info.strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        blocks = model.get_submodule(block_attr)
        for block in blocks:
            fully_shard(block)
        fully_shard(model)
        return model
    raise ConfigError(f"unknown distributed strategy {info.strategy!r}")


@contextlib.contextmanager
def grad_sync(model: nn.Module, info: DistInfo, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on accumulation micro-steps (DDP ``no_sync``, FSDP2 gradient sync flag)."""
    if enabled or not info.active:
        yield
        return
    if info.strategy == "ddp":
        with model.no_sync():
            yield
    elif info.strategy == "fsdp":
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def all_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few float64 scalars over ranks (exact for counts and weight sums)."""
    if not info.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def all_gather_object(obj: T, info: DistInfo) -> list[T]:
    if not info.active:
        return [obj]
    out: list[T | None] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out  # type: ignore[return-value]  # every slot now holds a rank's object


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()
