"""What the typed dataclass configs share: a strict ``from_dict``, YAML files and ``key=value`` overrides.

Every config class (decoder, tokenizers, trainers, decoding options) is a dataclass that validates itself
in ``__post_init__``. What they have in common is how a plain mapping (``config.json``, a YAML file, the
settings saved in a checkpoint) becomes one, and how command-line ``a.b.c=value`` overrides are folded into
that mapping first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from aromni.errors import ConfigError, InputError

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], d: Mapping[str, Any], what: str, *, noun: str = "fields") -> T:
    """``cls(**d)`` for the dataclass ``cls``, refusing keys it has no field for.

    Errors are :class:`ConfigError` whose problem starts with ``what`` (e.g. ``"decoder config"``):

    * keys of ``d`` that are not fields: ``"<what>: unknown <noun> [...]"``, the known ones as the hint;
    * a ``TypeError``/``ValueError`` from the constructor or ``__post_init__`` (a value of the wrong type):
      ``"<what>: <error>"``. A :class:`ConfigError` raised by ``__post_init__`` passes unchanged (it already
      names the value and the fix).
    """
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{what}: unknown {noun} {unknown}", f"known {noun}: {', '.join(sorted(known))}")
    try:
        return cls(**dict(d))
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what}: {e}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, with clear errors for a missing file, bad YAML or a non-mapping."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such config file", "check the path (a YAML file of settings)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    return raw


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in the nested dict ``raw`` (value parsed as YAML; missing sections are created)."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not key=value", "e.g. optim.lr=1e-4")
    parts = key.strip().split(".")
    node = raw
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node = nxt
    try:
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from None


def apply_overrides(raw: dict[str, Any], items: Iterable[str]) -> dict[str, Any]:
    """:func:`apply_override` for each of ``items`` in order (a later one wins); returns ``raw`` (changed)."""
    for item in items:
        apply_override(raw, item)
    return raw


def yaml_with_overrides(path: str | Path | None, overrides: Iterable[str]) -> dict[str, Any]:
    """The settings of a YAML file (none when ``path`` is ``None``) with ``key=value`` overrides applied."""
    return apply_overrides(read_yaml(path) if path is not None else {}, overrides)
