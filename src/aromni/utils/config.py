"""What the typed dataclass configs share: a strict ``from_dict``, YAML files and ``key=value`` overrides.

Every config class (decoder, tokenizers, trainers, decoding options) is a dataclass that validates itself
in ``__post_init__``. What they have in common is how a plain mapping (``config.json``, a YAML file, the
settings saved in a checkpoint) becomes one, and how command-line ``a.b.c=value`` overrides are folded into
that mapping first.

Values are checked against the field annotations before the constructor runs (:func:`coerce_value`): a
``bool`` field takes only ``true``/``false``; an ``int`` field an integer (``3.0`` and the string ``"1e3"``
too, but not ``1.5``, ``true`` or ``"ten"``); a ``float`` field a finite number (ints and numeric strings
such as ``"1e-4"``, which YAML 1.1 reads as a string, are converted; ``nan``/``inf`` are refused); a ``str``
field a string; lists, tuples and mappings their element types; nested dataclasses a mapping of their fields.
"""

from __future__ import annotations

import copy
import collections.abc as cabc
import dataclasses
import math
import numbers
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from aromni.errors import ConfigError, InputError
from aromni.utils.io import JSONValue

T = TypeVar("T")

#: Deepest nesting and most values a YAML config or an override value may hold (configs are a few levels deep;
#: this refuses pathological files before anything recursive walks them).
MAX_DEPTH = 32
MAX_NODES = 100_000

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_SEQUENCES = (list, tuple, cabc.Sequence, cabc.MutableSequence, cabc.Iterable, cabc.Collection)
_MAPPINGS = (dict, cabc.Mapping, cabc.MutableMapping)

Builder = Callable[[type, Any, str], Any]


def describe(value: object) -> str:
    """``value`` as a config error names it: strings say they are strings (``the string 'ten'``)."""
    if isinstance(value, str):
        return f"the string {value!r}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _expected(tp: Any) -> str:
    if tp is bool:
        return "true/false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    origin = get_origin(tp)
    if origin in _MAPPINGS or dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in _SEQUENCES:
        return "a list"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _fail(key: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(f"{key}: expected {_expected(tp)}, got {describe(value)}")


def _to_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise _fail(key, int, value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        s = value.strip()
        if _INTEGER.match(s):
            return int(s)
        if not _NUMBER.match(s):
            raise _fail(key, int, value)
        value = float(s)
    f = float(value)
    if not math.isfinite(f) or not f.is_integer():
        raise _fail(key, int, value)
    return int(f)


def _to_float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise _fail(key, float, value)
    if isinstance(value, str):
        if not _NUMBER.match(value.strip()):
            raise _fail(key, float, value)
    f = float(value)
    if not math.isfinite(f):
        raise ConfigError(f"{key}: expected a finite number, got {describe(value)}",
                          "nan and inf are not settings; numbers beyond ~1.8e308 overflow to inf")
    return f


def _is_union(origin: Any) -> bool:
    return origin is Union or origin is getattr(types, "UnionType", None)


def coerce_value(tp: object, value: object, key: str, build: Builder | None = None) -> object:
    """``value`` checked against (and converted to) the annotation ``tp``; :class:`ConfigError` names ``key``.

    ``build(cls, mapping, key)`` makes a nested dataclass ``cls`` from a mapping (default: strict
    :func:`dataclass_from_dict` naming the fields ``key.<field>``). Annotations this does not know
    (``Any``, classes, unresolved names) pass the value through unchanged.
    """
    if tp is Any or isinstance(tp, (str, TypeVar)):
        return value
    origin, args = get_origin(tp), get_args(tp)
    if value is None:
        if tp is type(None) or (_is_union(origin) and type(None) in args):
            return None
        raise ConfigError(f"{key}: null is not allowed here", f"give {_expected(tp)}")
    if _is_union(origin):
        return _coerce_union([a for a in args if a is not type(None)], value, key, build)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _fail(key, tp, value)
        return (build or _nested_builder)(tp, value, key)
    if tp is bool:
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return bool(value)
        raise _fail(key, bool, value)
    if tp is int:
        return _to_int(value, key)
    if tp is float:
        return _to_float(value, key)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {describe(value)}", "quote it in YAML: '...'")
    if origin is typing.Literal:
        if value in args:
            return value
        raise _fail(key, tp, value)
    if origin in _MAPPINGS or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _fail(key, tp, value)
        vt = args[1] if len(args) == 2 else Any
        return {k: coerce_value(vt, v, f"{key}.{k}", build) for k, v in value.items()}
    if origin in _SEQUENCES or tp in (list, tuple):
        return _coerce_sequence(tp, origin or tp, args, value, key, build)
    return value


def _coerce_sequence(tp: Any, origin: Any, args: tuple, value: Any, key: str, build: Builder | None) -> Any:
    if isinstance(value, Mapping):
        raise _fail(key, tp, value)
    if isinstance(value, (str, numbers.Number)):  # a scalar is a one-item list ("" an empty one)
        value = [] if isinstance(value, str) and not value.strip() else [value]
    elif not isinstance(value, (list, tuple)):
        raise _fail(key, tp, value)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {describe(value)}")
        items = [coerce_value(a, v, f"{key}[{i}]", build) for i, (a, v) in enumerate(zip(args, value))]
    else:
        et = args[0] if args else Any
        items = [coerce_value(et, v, f"{key}[{i}]", build) for i, v in enumerate(value)]
    return list(items) if origin is list else tuple(items)


def _coerce_union(arms: list[Any], value: Any, key: str, build: Builder | None) -> Any:
    if len(arms) == 1:
        return coerce_value(arms[0], value, key, build)
    for arm in arms:  # an exact match first: ``str | int`` keeps 5 an int and "5" a string
        if arm in (int, float, str, bool) and type(value) is arm:
            return value
    for arm in arms:
        try:
            return coerce_value(arm, value, key, build)
        except ConfigError:
            continue
    raise ConfigError(f"{key}: expected {' or '.join(_expected(a) for a in arms)}, got {describe(value)}")


def _nested_builder(cls: type, value: Mapping[str, Any], key: str) -> Any:
    return _from_dict(cls, value, key, "fields", prefix="")


def field_types(cls: type) -> dict[str, object]:
    """The resolved annotation of every field of dataclass ``cls`` (``Any`` where it cannot be resolved)."""
    try:
        hints = get_type_hints(cls)
    except Exception:  # an annotation naming something only imported for type checkers
        hints = {}
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def dataclass_from_dict(cls: type[T], d: Mapping[str, object], what: str, *, noun: str = "fields") -> T:
    """``cls(**d)`` for the dataclass ``cls``, strictly typed and refusing keys it has no field for.

    Errors are :class:`ConfigError` whose problem starts with ``what`` (e.g. ``"decoder config"``):

    * ``d`` not a mapping: ``"<what>: expected a mapping of settings, got ..."``;
    * keys of ``d`` that are not fields: ``"<what>: unknown <noun> [...]"``, the known ones as the hint
      (nested dataclass fields: ``"<what>: <field>: unknown fields [...]"``);
    * a value of the wrong type (see :func:`coerce_value`): ``"<what>: <field>: expected ..., got ..."``;
    * a ``TypeError``/``ValueError`` from the constructor or ``__post_init__``: ``"<what>: <error>"``. A
      :class:`ConfigError` raised by ``__post_init__`` passes unchanged (it already names the value and the fix).
    """
    return _from_dict(cls, d, what, noun, prefix="")


def _from_dict(cls: type[T], d: Any, what: str, noun: str, prefix: str) -> T:
    if not isinstance(d, Mapping):
        where = f"{what}: {prefix[:-1]}" if prefix else what
        raise ConfigError(f"{where}: expected a mapping of settings, got {describe(d)}")
    types_ = field_types(cls)
    unknown = sorted(prefix + str(k) for k in set(d) - set(types_))
    if unknown:
        raise ConfigError(f"{what}: unknown {noun} {unknown}", f"known {noun}: {', '.join(sorted(types_))}")

    def build(sub: type, value: Any, key: str) -> Any:
        return _from_dict(sub, value, what, noun, prefix=key + ".")

    kwargs = {}
    for name, value in d.items():
        try:
            kwargs[name] = coerce_value(types_[name], value, prefix + name, build)
        except ConfigError as e:
            if e.problem.startswith(f"{what}: "):
                raise
            raise ConfigError(f"{what}: {e.problem}", e.hint) from None
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what}: {e}") from None


def deep_merge(base: Mapping[str, object], top: Mapping[str, object]) -> dict[str, object]:
    """``base`` with ``top`` laid over it: nested mappings merge key by key, anything else in ``top`` replaces
    (deep-copied, so the result shares nothing mutable with ``top``). Neither argument is changed."""
    out = dict(base)
    for k, v in top.items():
        old = out.get(k)
        out[k] = deep_merge(old, v) if isinstance(v, Mapping) and isinstance(old, Mapping) else copy.deepcopy(v)
    return out


def check_tree(value: object, where: str) -> None:
    """Refuse a parsed config nested deeper than :data:`MAX_DEPTH` or holding more than :data:`MAX_NODES` values.

    Walks iteratively, so it is itself safe on any input (YAML aliases that multiply a structure included).
    """
    stack = [(value, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ConfigError(f"{where}: holds more than {MAX_NODES:,} values", "a config is a few settings")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep", "a config is a few levels deep")
        if isinstance(node, Mapping):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)


def non_finite_floats(value: object, prefix: str = "") -> list[str]:
    """Dotted paths of the ``nan``/``inf`` floats anywhere in a parsed config (``["optim.lr"]``)."""
    found = []
    stack: list[tuple[Any, str]] = [(value, prefix)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            found.append(path or "<root>")
        elif isinstance(node, Mapping):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
    return sorted(found)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def read_yaml(path: str | Path) -> dict[str, JSONValue]:
    """A YAML mapping from ``path``, with clear errors for a missing file, bad YAML, a non-mapping, or a
    pathological file (nested too deeply, too many values: :func:`check_tree`)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such config file", "check the path (a YAML file of settings)")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file", "a config is a YAML text file") from None
    except OSError as e:
        raise InputError(f"{p}: cannot be read ({e.strerror or e})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML ({_one_line(e)})") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a config", "a config is a few levels deep") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping, got {type(raw).__name__}",
                          "write settings as `key: value` lines")
    check_tree(raw, str(p))
    return raw


def apply_override(raw: dict[str, JSONValue], item: str) -> None:
    """Set ``a.b.c=value`` in the nested dict ``raw`` (value parsed as YAML; missing sections are created)."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not key=value", "e.g. optim.lr=1e-4")
    parts = key.strip().split(".")
    if not all(p.strip() for p in parts):
        raise ConfigError(f"override {item!r}: {key.strip()!r} is not a dotted key", "e.g. optim.lr=1e-4")
    node = raw
    for p in parts[:-1]:
        if node.get(p) is None:  # an absent section, or one left empty in the YAML file (`optim:`)
            node[p] = {}
        nxt = node[p]
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node = nxt
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({_one_line(e)})") from None
    except RecursionError:
        raise ConfigError(f"override {key.strip()!r}: value nested too deeply") from None
    check_tree(parsed, f"override {key.strip()!r}")
    node[parts[-1]] = parsed


def apply_overrides(raw: dict[str, JSONValue], items: Iterable[str]) -> dict[str, JSONValue]:
    """:func:`apply_override` for each of ``items`` in order (a later one wins); returns ``raw`` (changed)."""
    for item in items:
        apply_override(raw, item)
    return raw


def yaml_with_overrides(path: str | Path | None, overrides: Iterable[str]) -> dict[str, JSONValue]:
    """The settings of a YAML file (none when ``path`` is ``None``) with ``key=value`` overrides applied."""
    return apply_overrides(read_yaml(path) if path is not None else {}, overrides)
