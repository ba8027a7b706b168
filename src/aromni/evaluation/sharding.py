"""Sharding samples across ranks and the single merge point.

``torchrun --nproc-per-node N -m aromni eval ...`` sets ``RANK`` / ``WORLD_SIZE``; a plain process is rank 0 of
a world of 1 and runs the same code. EvalSample ``i`` (in the selection's order) belongs to rank ``i % world``. When
its samples are done a rank writes a completion marker; rank 0 then waits (a gloo barrier when
``torch.distributed`` is initialised, then the markers and records on disk) and merges exactly once.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch.distributed as dist

from aromni.errors import AromniError, InputError
from aromni.utils.io import atomic_write_json

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise InputError(f"rank {self.rank} is not in a world of {self.world}", "check RANK and WORLD_SIZE")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence[T]) -> list[T]:
        """This rank's items: every ``world``-th one from ``rank``."""
        return list(items[self.rank::self.world])


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise InputError(f"{name}={value!r} is not an integer", "unset it or launch with torchrun") from None


def shard_from_env() -> Shard:
    """The shard of this process from ``RANK`` / ``WORLD_SIZE`` (absent: rank 0 of 1)."""
    return Shard(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1))


def init_process_group(shard: Shard, timeout_s: float) -> bool:
    """Start a gloo process group under torchrun (``MASTER_ADDR`` set, world > 1); ``True`` when this call
    started it (the caller then destroys it with :func:`end_process_group`)."""
    if shard.world == 1 or dist.is_initialized() or "MASTER_ADDR" not in os.environ:
        return False
    dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return True


def end_process_group(started: bool) -> None:
    if started and dist.is_initialized():
        dist.destroy_process_group()


def marker_path(root: Path, shard: Shard) -> Path:
    return root / "shards" / f"rank-{shard.rank}-of-{shard.world}.done"


def mark_done(root: Path, shard: Shard, n_samples: int) -> None:
    atomic_write_json(marker_path(root, shard), {"rank": shard.rank, "world": shard.world, "samples": n_samples})


def barrier() -> None:
    """Every rank waits for the others (a no-op without a process group)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def wait_for_shards(root: Path, shard: Shard, complete: Callable[[], bool], *, timeout_s: float,
                    poll_s: float = 2.0) -> None:
    """Block (rank 0) until every rank's marker exists and ``complete()`` says every record is there.

    Under a process group every rank has passed :func:`barrier` first, so this only confirms what the ranks
    wrote; for shards started by hand with ``RANK`` / ``WORLD_SIZE`` it is the whole mechanism."""
    deadline = time.monotonic() + timeout_s
    markers = [marker_path(root, Shard(r, shard.world)) for r in range(shard.world)]
    while True:
        missing = [m.name for m in markers if not m.is_file()]
        if not missing and complete():
            return
        if time.monotonic() > deadline:
            what = f"no completion marker from {', '.join(missing)}" if missing else "records are missing"
            raise AromniError(f"{root}: shards did not finish within {timeout_s:.0f} s ({what})",
                              "rerun the missing ranks with the same --out; finished samples are kept")
        time.sleep(poll_s)
