from dataclasses import dataclass

import pytest

from aromni.errors import ConfigError, InputError
from aromni.inference.options import DecodeOptions
from aromni.models.config import DecoderConfig
from aromni.tokenizers.image.config import VQGANConfig
from aromni.tokenizers.speech.codec.config import CodecConfig
from aromni.tokenizers.speech.wavtokenizer.config import WavTokenizerConfig
from aromni.training.recipes.codec_config import CodecTrainConfig
from aromni.training.recipes.vqgan_config import VQGANTrainConfig
from aromni.utils.config import (
    apply_override,
    apply_overrides,
    dataclass_from_dict,
    read_yaml,
    yaml_with_overrides,
)


@dataclass
class _Cfg:
    n: int = 1
    name: str = "a"

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ConfigError(f"toy config: n must be positive, got {self.n}", "use 1")


def test_dataclass_from_dict_names_unknown_keys_and_the_known_ones():
    assert dataclass_from_dict(_Cfg, {"n": 3}, "toy config") == _Cfg(n=3)
    with pytest.raises(ConfigError, match=r"toy config: unknown fields \['m', 'z'\]") as e:
        dataclass_from_dict(_Cfg, {"z": 1, "m": 2, "n": 3}, "toy config")
    assert e.value.hint == "known fields: n, name"
    with pytest.raises(ConfigError, match=r"unknown keys \['m'\]") as e:
        dataclass_from_dict(_Cfg, {"m": 2}, "toy config", noun="keys")
    assert e.value.hint == "known keys: n, name"


def test_dataclass_from_dict_wraps_type_errors_and_keeps_config_errors():
    with pytest.raises(ConfigError, match="^toy config: ") as e:
        dataclass_from_dict(_Cfg, {"n": "x"}, "toy config")  # "x" <= 0: TypeError inside __post_init__
    assert e.value.__cause__ is None and "str" in e.value.problem
    with pytest.raises(ConfigError) as e:
        dataclass_from_dict(_Cfg, {"n": 0}, "toy config")
    assert e.value.problem == "toy config: n must be positive, got 0" and e.value.hint == "use 1"


@pytest.mark.parametrize("cls, what, noun", [
    (DecoderConfig, "decoder config", "fields"),
    (VQGANConfig, "vqgan config", "fields"),
    (VQGANTrainConfig, "train config", "keys"),
    (WavTokenizerConfig, "wavtokenizer config", "fields"),
    (CodecConfig, "codec config", "keys"),
    (CodecTrainConfig, "codec train config", "keys"),
    (DecodeOptions, "generation options", "fields"),
])
def test_every_config_class_refuses_unknown_keys_by_name(cls, what, noun):
    with pytest.raises(ConfigError, match=rf"^{what}: unknown {noun} \['bogus_key'\]") as e:
        cls.from_dict({"bogus_key": 1})
    assert e.value.hint.startswith(f"known {noun}: ")


def test_overrides_nest_parse_yaml_and_reject_bad_items():
    raw = {"optim": {"lr": 1.0}}
    assert apply_overrides(raw, ["optim.lr=0.5", "a.b.c=[1, 2]", "flag=false", "s="]) is raw
    assert raw == {"optim": {"lr": 0.5}, "a": {"b": {"c": [1, 2]}}, "flag": False, "s": ""}
    with pytest.raises(ConfigError, match="key=value"):
        apply_override({}, "optim.lr")
    with pytest.raises(ConfigError, match="'lr' is not a section"):
        apply_override(raw, "optim.lr.x=1")
    with pytest.raises(ConfigError, match="not valid YAML"):
        apply_override({}, "a=[1,")


def test_yaml_files(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 5\nmodel: {ch: 16}\n")
    assert yaml_with_overrides(f, ["model.ch=8", "lr=0.1"]) == {"steps": 5, "model": {"ch": 8}, "lr": 0.1}
    assert yaml_with_overrides(None, ["x=1"]) == {"x": 1}
    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml(tmp_path / "empty.yaml") == {}
    with pytest.raises(InputError, match="no such config file"):
        read_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        read_yaml(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        read_yaml(tmp_path / "bad.yaml")
