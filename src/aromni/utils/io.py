"""Atomic, never-silently-overwriting file writes.

A write goes to a temporary file in the destination directory, is fsynced, then renamed over the target, so a
crash never leaves a half-written file behind. Directory "saves" use the same trick at directory level.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Union

from aromni.errors import InputError

#: A value JSON can hold (what :func:`read_json` returns and :func:`atomic_write_json` writes).
JSONValue = Union[None, bool, int, float, str, list["JSONValue"], dict[str, "JSONValue"]]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    # Make the rename itself durable; not supported on every platform/filesystem.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it is fsynced and renamed onto ``dest``.

    Example::

        with atomic_path("model.safetensors") as tmp:
            safetensors.torch.save_file(state, tmp)
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or ".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would (0666 & ~umask).
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | os.PathLike[str], obj: JSONValue, *, indent: int = 2) -> None:
    atomic_write_text(dest, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


class JSONNestingError(InputError):
    """A JSON document nested deeper than the parser can follow (Python's recursion limit)."""


def loads_json(text: str | bytes, source: str = "input") -> JSONValue:
    """Parse JSON text; malformed, over-deep or otherwise unparseable input raises a clear :class:`InputError`
    naming ``source`` (never ``RecursionError`` or a bare ``ValueError``). Over-deep documents raise the
    :class:`JSONNestingError` subclass."""
    try:
        return json.loads(text)
    except RecursionError:
        # json's C scanner recurses once per level: a document nested ~1000 deep exhausts the stack limit.
        raise JSONNestingError(f"{source}: JSON nested too deeply", "flatten the structure") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{source}: not valid JSON ({e})", "fix or regenerate the file") from None
    except (ValueError, TypeError) as e:  # e.g. an integer of more than 4300 digits, undecodable bytes
        raise InputError(f"{source}: not valid JSON ({e})", "fix or regenerate the file") from None


def read_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """Read a UTF-8 text file; a missing, unreadable or non-UTF-8 file raises a clear :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise InputError(f"{path}: not a file", f"pass a {what}, not a directory")
        raise InputError(f"{path}: no such {what}", "check the path")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})", "save it as UTF-8") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what} ({e.strerror or e})") from None


def read_json(path: str | os.PathLike[str]) -> JSONValue:
    """Read a JSON file, turning a missing, unreadable, malformed or over-deep file into a clear
    :class:`InputError`."""
    return loads_json(read_text(path), str(path))


def read_jsonl(path: str | os.PathLike[str], what: str = "JSONL file") -> list[tuple[int, JSONValue]]:
    """``[(line number, value)]`` of a JSON-lines file (blank lines skipped); a bad line raises an
    :class:`InputError` naming ``path:line``."""
    out = []
    for n, line in enumerate(read_text(path, what).splitlines(), 1):
        if line.strip():
            out.append((n, loads_json(line, f"{path}:{n}")))
    return out


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory in a temporary sibling and move it into place when the block succeeds.

    Refuses to replace an existing non-empty ``dest`` unless ``overwrite=True`` (never lose user data silently).
    """
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise InputError(f"{dest} already exists and is not empty", "choose another path or pass --overwrite")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield tmp
        # mkdtemp creates 0700 directories; give the result what a plain mkdir() would (0777 & ~umask).
        os.chmod(tmp, 0o777 & ~_umask())
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def path_kind(path: Path) -> Literal["file", "dir", "other", "missing"]:
    """What ``path`` names: a regular file, a directory, something else (a device, a FIFO) or nothing. A name
    the OS refuses to look up (too long, NUL bytes, no access) counts as ``"missing"`` instead of raising, so a
    user's odd path becomes a clean "no such file" error."""
    try:
        if path.is_file():
            return "file"
        if path.is_dir():
            return "dir"
        return "other" if path.exists() else "missing"
    except (OSError, ValueError):
        return "missing"
