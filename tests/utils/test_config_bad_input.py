"""Strict typed configs: ``dataclass_from_dict`` checks every value against its field type, and YAML files /
overrides that are malformed, pathological or hold non-numbers are one-line ConfigErrors (issue #9)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from aromni.errors import ConfigError
from aromni.inference.options import DecodeOptions
from aromni.models.config import DecoderConfig
from aromni.utils.config import apply_override, coerce_value, dataclass_from_dict, read_yaml


@dataclass
class _Inner:
    on: bool = False
    k: int = 1


@dataclass
class _Cfg:
    flag: bool = True
    n: int = 1
    x: float = 0.5
    name: str = "a"
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[float, float] = (0.9, 0.99)
    tags: list[str] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    maybe: int | None = None
    inner: _Inner = field(default_factory=_Inner)


def _make(**kw):
    return dataclass_from_dict(_Cfg, kw, "toy config")


@pytest.mark.parametrize("key, value, words", [
    ("flag", "yes", ["flag", "true/false", "'yes'"]),
    ("flag", 1, ["flag", "true/false"]),
    ("flag", "false", ["flag", "true/false"]),
    ("n", 1.5, ["n", "integer", "1.5"]),
    ("n", True, ["n", "integer"]),
    ("n", "ten", ["n", "integer", "'ten'"]),
    ("n", [1], ["n", "integer"]),
    ("x", "abc", ["x", "number", "'abc'"]),
    ("x", True, ["x", "number"]),
    ("x", math.nan, ["x", "finite"]),
    ("x", math.inf, ["x", "finite"]),
    ("x", "1e400", ["x", "finite"]),
    ("x", "inf", ["x", "number"]),
    ("name", 5, ["name", "string"]),
    ("name", None, ["name", "null"]),
    ("sizes", [1, "two"], ["sizes[1]", "integer"]),
    ("pair", [0.9], ["pair", "2 values"]),
    ("tags", {"a": 1}, ["tags", "list"]),
    ("ratios", [1, 2], ["ratios", "mapping"]),
    ("ratios", {"text": "abc"}, ["ratios.text", "number"]),
    ("maybe", "x", ["maybe", "integer"]),
    ("inner", 3, ["inner", "mapping"]),
    ("inner", {"on": "yes"}, ["inner.on", "true/false"]),
])
def test_values_of_the_wrong_type_name_the_key_the_value_and_the_type(key, value, words):
    with pytest.raises(ConfigError) as e:
        _make(**{key: value})
    msg = str(e.value)
    assert msg.startswith("toy config: ") and "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_nested_unknown_keys_are_named_with_their_section():
    with pytest.raises(ConfigError, match=r"toy config: unknown fields \['inner.bogus'\]"):
        _make(inner={"bogus": 1})
    with pytest.raises(ConfigError, match="toy config: expected a mapping"):
        dataclass_from_dict(_Cfg, [1, 2], "toy config")


def test_clean_values_are_converted_to_the_field_type():
    cfg = _make(n="12", x="1e-4", sizes=[3, 4.0], pair=[1, "0.5"], tags="one", ratios={"a": 1},
                maybe=None, inner={"on": True, "k": "1e3"})
    assert cfg.n == 12 and cfg.x == 1e-4 and isinstance(cfg.x, float)
    assert cfg.sizes == (3, 4) and cfg.pair == (1.0, 0.5) and cfg.tags == ["one"]
    assert cfg.ratios == {"a": 1.0} and isinstance(cfg.ratios["a"], float)
    assert cfg.inner == _Inner(on=True, k=1000)
    assert _make(tags="").tags == [] and _make(n=3.0).n == 3


def test_unions_prefer_an_exact_match():
    assert coerce_value(str | int, 5, "k") == 5
    assert coerce_value(str | int, "5", "k") == "5"
    assert coerce_value(int | list[int] | None, [1, 2], "k") == [1, 2]
    with pytest.raises(ConfigError, match="k: expected a string or an integer"):
        coerce_value(str | int, True, "k")


def test_decode_options_refuse_strings_for_bools_and_numbers():
    with pytest.raises(ConfigError, match=r"image\.cfg: expected true/false, got the string 'yes'"):
        DecodeOptions.from_dict({"image": {"cfg": "yes"}})
    with pytest.raises(ConfigError, match=r"text\.temperature: expected a number"):
        DecodeOptions.from_dict({"text": {"temperature": "hot"}})
    with pytest.raises(ConfigError, match="max_new_tokens: expected an integer"):
        DecodeOptions.from_dict({"max_new_tokens": 1.5})
    opts = DecodeOptions.from_dict({"image": {"cfg": False}, "extra_eos": ["eom", 7], "seed": [1, 2]})
    assert opts.image.cfg is False and opts.extra_eos == ("eom", 7) and opts.seed == (1, 2)


def test_decoder_presets_refuse_unknown_fields_and_negative_sizes():
    with pytest.raises(ConfigError, match=r"unknown fields \['dimx'\]"):
        DecoderConfig.preset("tiny", dimx=4)
    with pytest.raises(ConfigError, match="dim must be positive, got -4"):
        DecoderConfig.preset("tiny", dim=-4)


@pytest.mark.parametrize("text, words", [
    ("- 1\n- 2\n", ["top level must be a mapping", "list"]),
    ("a: [1,\n", ["invalid YAML"]),
    ("just a string\n", ["top level must be a mapping", "str"]),
    ("a: " + "[" * 2000 + "]" * 2000 + "\n", ["nested"]),
    ("a: " + "{b: " * 40 + "1" + "}" * 40 + "\n", ["nested more than"]),
])
def test_malformed_yaml_files_are_one_line_config_errors(tmp_path, text, words):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        read_yaml(f)
    assert "\n" not in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_yaml_alias_bombs_and_binary_files_are_refused(tmp_path):
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="more than"):
        read_yaml(tmp_path / "bomb.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        read_yaml(tmp_path / "bin.yaml")


def test_overrides_refuse_deep_values_and_empty_key_parts():
    with pytest.raises(ConfigError, match="nested"):
        apply_override({}, "a=" + "[" * 2000 + "]" * 2000)
    with pytest.raises(ConfigError, match="not a dotted key"):
        apply_override({}, "optim..lr=1")
    raw = {"optim": None}  # a section left empty in a YAML file (`optim:`)
    apply_override(raw, "optim.lr=0.1")
    assert raw == {"optim": {"lr": 0.1}}
