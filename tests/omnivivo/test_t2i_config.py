"""T2IConfig: LlamaGen's presets and derived sizes, JSON round trip, and a clear ConfigError for bad values."""

from __future__ import annotations

import pytest

from aromni.errors import ConfigError
from aromni.omnivivo.t2i_config import T2IConfig, ffn_hidden, find_multiple


def test_presets_and_derived_sizes():
    xl = T2IConfig.preset("GPT-XL")
    assert (xl.dim, xl.n_layer, xl.n_head, xl.n_kv_head, xl.head_dim) == (1280, 36, 20, 20, 64)
    assert (xl.vocab_size, xl.cls_token_num, xl.caption_dim, xl.block_size, xl.grid_size) == (16384, 120, 2048, 256, 16)
    assert xl.ffn_dim == 3584 and ffn_hidden(1280) == find_multiple(3413, 256) == 3584
    assert (xl.class_dropout_prob, xl.token_dropout_p, xl.resid_dropout_p, xl.ffn_dropout_p, xl.attn_dropout_p) == (
        0.1, 0.1, 0.1, 0.1, 0.0)
    sizes = {name: (c.n_layer, c.n_head, c.dim) for name in ("GPT-B", "GPT-L", "GPT-XXL")
             for c in [T2IConfig.preset(name)]}
    assert sizes == {"GPT-B": (12, 12, 768), "GPT-L": (24, 16, 1024), "GPT-XXL": (48, 24, 1536)}
    toy = T2IConfig.preset("toy")
    assert (toy.ffn_dim, toy.head_dim, toy.grid_size, toy.max_seq_len) == (512, 32, 8, 80)
    assert T2IConfig.preset("GPT-XL", block_size=1024).grid_size == 32
    assert T2IConfig.preset("toy", n_head=8).head_dim == 16  # any multiple of 4 works for the 2-D RoPE


def test_dict_round_trip_and_replace():
    cfg = T2IConfig.preset("toy", n_kv_head=2, ffn_dim_multiplier=1.5)
    assert T2IConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(block_size=16).block_size == 16 and cfg.block_size == 64


@pytest.mark.parametrize(("changes", "message"), [
    ({"dim": 130}, "not divisible by n_head"),
    ({"dim": 72, "n_head": 4}, "must be a multiple of 4"),  # head_dim 18
    ({"n_kv_head": 3}, "not a multiple of n_kv_head"),
    ({"block_size": 60}, "not a square grid"),
    ({"n_layer": 0}, "n_layer must be a positive integer"),
    ({"class_dropout_prob": 1.0}, "probability in"),
    ({"resid_dropout_p": -0.1}, "probability in"),
    ({"norm_eps": 0.0}, "norm_eps must be a positive finite number"),
    ({"rope_base": -1.0}, "rope_base must be a positive finite number"),
    ({"rope_base": float("inf")}, "rope_base: expected a finite number"),
    ({"ffn_dim_multiplier": -1.0}, "ffn_dim_multiplier"),
])
def test_bad_values_raise_config_errors(changes: dict[str, object], message: str):
    with pytest.raises(ConfigError, match=message):
        T2IConfig.preset("toy", **changes)


def test_bad_types_and_names_raise_config_errors():
    with pytest.raises(ConfigError, match="unknown t2i preset"):
        T2IConfig.preset("GPT-XXXXL")
    with pytest.raises(ConfigError, match="unknown fields"):
        T2IConfig.from_dict({"dim": 128, "n_layer": 2, "n_head": 4, "heads": 4})
    with pytest.raises(ConfigError, match="dim"):
        T2IConfig.from_dict({"dim": "wide", "n_layer": 2, "n_head": 4})
    with pytest.raises(ConfigError, match="dim must be a positive integer"):
        T2IConfig(dim=True, n_layer=2, n_head=1)
    with pytest.raises(ConfigError, match="rope_base must be a positive finite number"):
        T2IConfig(dim=64, n_layer=2, n_head=4, rope_base=float("inf"))
