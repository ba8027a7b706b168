"""LlamaGen VQ config: LlamaGen's ModelArgs defaults, the presets, and ConfigErrors for bad values."""

from __future__ import annotations

import pytest

from aromni.errors import ConfigError
from aromni.tokenizers.image.llamagen_vq_config import LlamaGenVQConfig


def test_defaults_are_llamagen_model_args_and_vq16():
    cfg = LlamaGenVQConfig()
    # omnivivo.md §2: ModelArgs values; ch 128 and 2 res blocks hard-coded upstream; VQ-16 = [1,1,2,2,4].
    assert (cfg.codebook_size, cfg.codebook_embed_dim, cfg.codebook_l2_norm, cfg.codebook_show_usage) == (
        16384, 8, True, True)
    assert (cfg.commit_loss_beta, cfg.entropy_loss_ratio) == (0.25, 0.0)
    assert (cfg.z_channels, cfg.dropout_p) == (256, 0.0)
    assert (cfg.ch, cfg.num_res_blocks) == (128, 2)
    assert cfg.encoder_ch_mult == cfg.decoder_ch_mult == (1, 1, 2, 2, 4)
    assert cfg.downsample_factor == 16 and cfg.grid == (16, 16)  # 256 px -> 16x16 = 256 codes
    assert cfg.preset_name() == "VQ-16"


def test_presets():
    vq8 = LlamaGenVQConfig.preset("VQ-8")
    assert vq8.encoder_ch_mult == (1, 2, 2, 4) and vq8.downsample_factor == 8 and vq8.preset_name() == "VQ-8"
    toy = LlamaGenVQConfig.preset("toy")
    assert (toy.ch, toy.z_channels, toy.codebook_size, toy.codebook_embed_dim) == (32, 64, 256, 8)
    assert toy.encoder_ch_mult == (1, 2, 2, 4) and toy.image_size == 64 and toy.grid == (8, 8)
    assert toy.codebook_l2_norm and toy.preset_name() == "toy"
    # loss weights and image size are not architecture: the preset is still recognised
    assert toy.replace(commit_loss_beta=0.5, image_size=128).preset_name() == "toy"
    assert toy.replace(z_channels=32).preset_name() is None
    assert LlamaGenVQConfig.from_dict(toy.to_dict()) == toy


@pytest.mark.parametrize("changes", [
    {"codebook_size": 0}, {"codebook_embed_dim": -1}, {"z_channels": 0}, {"ch": 0}, {"num_res_blocks": 0},
    {"image_size": 0}, {"encoder_ch_mult": ()}, {"decoder_ch_mult": (1, 0)},
    {"encoder_ch_mult": (1, 2), "decoder_ch_mult": (1, 2, 2)},  # down- and upsampling factors differ
    {"commit_loss_beta": -0.1}, {"entropy_loss_ratio": float("nan")}, {"dropout_p": 1.0}, {"dropout_p": -0.1},
    {"image_size": 250},  # not a multiple of 16
    {"ch": 48},  # 48 is not a multiple of GroupNorm's 32 groups
    {"codebook_size": True},  # a bool is not a size
])
def test_bad_values_raise_config_error(changes):
    with pytest.raises(ConfigError):
        LlamaGenVQConfig(**changes)


def test_bad_mappings_and_presets_raise_config_error():
    with pytest.raises(ConfigError, match="unknown"):
        LlamaGenVQConfig.from_dict({"codebook_sise": 8})
    with pytest.raises(ConfigError):
        LlamaGenVQConfig.from_dict({"codebook_size": "many"})
    with pytest.raises(ConfigError, match="preset"):
        LlamaGenVQConfig.preset("VQ-32")
