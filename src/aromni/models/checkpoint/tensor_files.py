"""Reading and writing tensor files safely: memory-mapped safetensors (single or sharded) and ``.pth``.

Every failure a user can cause (missing file, garbage bytes, a pickle holding arbitrary Python objects) becomes a
:class:`~aromni.errors.CheckpointError` naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from aromni.errors import CheckpointError, InputError
from aromni.utils.io import atomic_path, atomic_write_json, read_json
from aromni.utils.safe_load import load_pth


class TensorSource:
    """Lazy read access to the tensors of one checkpoint, possibly spread over several files.

    ``shape(key)`` reads only headers; ``get(key)`` returns a tensor backed by the memory-mapped file.
    """

    def __init__(self, where: dict[str, Path], handles: dict[Path, object], label: str):
        self._where, self._handles, self.label = where, handles, label

    def keys(self) -> list[str]:
        return list(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def file_of(self, key: str) -> Path:
        return self._where[key]

    def shape(self, key: str) -> tuple[int, ...]:
        h = self._handles[self._where[key]]
        return tuple(h.get_slice(key).get_shape()) if hasattr(h, "get_slice") else tuple(h[key].shape)

    def dtype(self, key: str) -> str:
        """The stored dtype of ``key`` from the headers: a safetensors code (``"F32"``, ``"I8"``) or a torch name."""
        h = self._handles[self._where[key]]
        return str(h.get_slice(key).get_dtype()) if hasattr(h, "get_slice") else str(h[key].dtype)

    def check_floating(self, key: str) -> None:
        """:func:`check_floating` for the stored tensor ``key``."""
        check_floating(key, self.dtype(key), str(self._where[key]))

    def get(self, key: str) -> torch.Tensor:
        if key not in self._where:
            raise CheckpointError(f"{self.label}: no tensor {key!r}",
                                  "the checkpoint is incomplete or of another architecture")
        h = self._handles[self._where[key]]
        try:
            return h.get_tensor(key) if hasattr(h, "get_tensor") else h[key]
        except (SafetensorError, OSError, RuntimeError) as e:
            raise CheckpointError(f"{self._where[key]}: cannot read tensor {key!r} ({e})",
                                  "the file is truncated or corrupt; download or export it again") from None


#: safetensors dtype codes of floating-point tensors.
FLOAT_CODES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})


def check_floating(key: str, dtype: str | torch.dtype, source: str) -> None:
    """Refuse a weight stored as an integer or bool tensor: :class:`CheckpointError` naming it and its dtype.

    ``dtype`` is a torch dtype (or its name, ``"torch.int8"``) or a safetensors code (``"I8"``, ``"BOOL"``).
    """
    if isinstance(dtype, torch.dtype):
        ok = dtype.is_floating_point
    else:
        name = dtype.removeprefix("torch.")
        ok = name.upper() in FLOAT_CODES or (hasattr(torch, name) and isinstance(getattr(torch, name), torch.dtype)
                                             and getattr(torch, name).is_floating_point)
    if not ok:
        raise CheckpointError(f"{source}: tensor {key!r} is stored as {dtype}, expected a floating-point tensor "
                              "(float32, bfloat16 or float16)",
                              "the file is damaged or holds quantized / non-weight data; export the weights again")


def open_safetensors(files: Iterable[Path], label: str) -> TensorSource:
    """Open safetensors ``files`` (headers only) and index their keys."""
    where: dict[str, Path] = {}
    handles: dict[Path, object] = {}
    for f in files:
        if not f.is_file():
            raise CheckpointError(f"{f}: missing", "the checkpoint is incomplete; download or export it again")
        try:
            h = safe_open(str(f), framework="pt")
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{f}: not a readable safetensors file ({e})",
                                  "the file is truncated or corrupt; download or export it again") from None
        handles[f] = h
        for k in h.keys():
            where[k] = f
    return TensorSource(where, handles, label)


def open_pth(files: Iterable[Path], label: str) -> TensorSource:
    """Open ``.pth``/``.bin`` state dicts (memory-mapped where the file format allows) as one source."""
    where: dict[str, Path] = {}
    handles: dict[Path, object] = {}
    for f in files:
        state = load_pth(f)
        handles[f] = state
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                where[k] = f
    return TensorSource(where, handles, label)


def safetensors_files(directory: Path, base: str = "model") -> list[Path] | None:
    """The weight files of an HF-style directory: ``base.safetensors`` or the shards its index lists."""
    index = directory / f"{base}.safetensors.index.json"
    if index.is_file():
        return _index_files(index)
    single = directory / f"{base}.safetensors"
    return [single] if single.is_file() else None


def pth_files(directory: Path, base: str = "pytorch_model") -> list[Path] | None:
    index = directory / f"{base}.bin.index.json"
    if index.is_file():
        return _index_files(index)
    single = directory / f"{base}.bin"
    return [single] if single.is_file() else None


def _index_files(index: Path) -> list[Path]:
    try:
        raw = read_json(index)
    except InputError as e:
        raise CheckpointError(e.problem, "download or export the checkpoint again") from None
    weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: has no 'weight_map'", "download or export the checkpoint again")
    return [index.parent / name for name in dict.fromkeys(weight_map.values())]


# ------------------------------------------------------------------------------------------------ writing
def _owned(t: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor that owns its storage (safetensors refuses views sharing memory)."""
    t = t.detach().contiguous()
    if t.untyped_storage().nbytes() != t.numel() * t.element_size() or t.storage_offset():
        t = t.clone()
    return t


def write_safetensors(items: Iterable[tuple[str, torch.Tensor]], directory: Path, *, base: str = "model",
                      max_shard_bytes: int | None = None, dtype: torch.dtype | None = None,
                      metadata: dict[str, str] | None = None) -> list[Path]:
    """Write ``items`` as ``base.safetensors``, or as HF-style shards plus index when they exceed ``max_shard_bytes``.

    One shard is materialised at a time, so memory stays bounded by the shard size. Every file is written
    atomically; shards get their final ``-0000i-of-0000n`` names once the count is known.
    """
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", **(metadata or {})}
    limit = max_shard_bytes or (1 << 62)
    temps: list[tuple[Path, list[str], int]] = []
    current: dict[str, torch.Tensor] = {}
    size = 0

    def flush() -> None:
        nonlocal current, size
        if not current:
            return
        tmp = directory / f".{base}.part{len(temps):05d}.safetensors"
        with atomic_path(tmp) as t:
            save_file(current, str(t), metadata=meta)
        temps.append((tmp, list(current), size))
        current, size = {}, 0

    for key, tensor in _cast_items(items, dtype):
        t = _owned(tensor)
        nbytes = t.numel() * t.element_size()
        if current and size + nbytes > limit:
            flush()
        current[key] = t
        size += nbytes
    flush()
    return _finalise_shards(temps, directory, base)


def _finalise_shards(temps: list[tuple[Path, list[str], int]], directory: Path, base: str) -> list[Path]:
    if len(temps) == 1:
        final = directory / f"{base}.safetensors"
        os.replace(temps[0][0], final)
        with contextlib.suppress(FileNotFoundError):
            (directory / f"{base}.safetensors.index.json").unlink()  # a stale index would shadow the new file
        return [final]
    n = len(temps)
    weight_map: dict[str, str] = {}
    files = []
    for i, (tmp, keys, _) in enumerate(temps):
        final = directory / f"{base}-{i + 1:05d}-of-{n:05d}.safetensors"
        os.replace(tmp, final)
        files.append(final)
        weight_map.update({k: final.name for k in keys})
    total = sum(s for _, _, s in temps)
    atomic_write_json(directory / f"{base}.safetensors.index.json",
                      {"metadata": {"total_size": total}, "weight_map": weight_map})
    return files


def _cast_items(items: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype | None
                ) -> Iterator[tuple[str, torch.Tensor]]:
    for key, t in items:
        yield key, (t.to(dtype) if dtype is not None and t.is_floating_point() else t)


def write_pth(state: dict[str, object], dest: Path) -> None:
    """``torch.save`` (zipfile format, so it can be memory-mapped on load) written atomically."""
    with atomic_path(dest) as tmp:
        torch.save(state, tmp)


def check_state_dict(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str, *,
                     keys_hint: str, shape_hint: str, noun: str = "key", has: str = "the config expects") -> None:
    """Refuse ``state`` unless it has exactly ``expected``'s keys, each with the same shape and a floating dtype:
    one :class:`CheckpointError` naming the first missing / unexpected key (and how many more) or the first
    mismatched shape (``"{key} has shape (..), {has} (..)"``)."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = [f"{len(missing)} missing {noun}(s) (first {missing[0]!r})" if missing else "",
                 f"{len(unexpected)} unexpected key(s) (first {unexpected[0]!r})" if unexpected else ""]
        raise CheckpointError(f"{source}: {' and '.join(x for x in parts if x)}", keys_hint)
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"{source}: {key} has shape {tuple(got.shape)}, {has} {tuple(want.shape)}",
                                  shape_hint)
        check_floating(key, got.dtype, source)
