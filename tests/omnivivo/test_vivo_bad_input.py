"""Bad OmniVIVO configs and inputs give one clear ConfigError / InputError (before anything is allocated), and a
config survives a dict round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aromni.errors import ConfigError, InputError
from aromni.omnivivo.lora import LoRAConfig
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone
from aromni.omnivivo.vivo_config import VivoConfig
from aromni.omnivivo.vivo_generate import generate
from aromni.omnivivo.vivo_model import VivoModel
from aromni.tokenizers.speech.codec import CodecConfig, StreamingCodec

CFG = T2IConfig.preset("toy", n_layer=2, block_size=16)
L, C, K = CFG.cls_token_num, CFG.caption_dim, 16


def _cfg(**overrides: object) -> VivoConfig:
    kw = {"speech_vocab": K, "branch_layers": 1, "lora": LoRAConfig(r=2, alpha=2.0), "max_speech_len": 20}
    return VivoConfig(**{**kw, **overrides})


@pytest.fixture(scope="module")
def model() -> VivoModel:
    torch.manual_seed(0)
    return VivoModel(T2IBackbone(CFG).eval(), _cfg())


@pytest.mark.parametrize("bad,match", [
    ({"speech_vocab": 0}, "speech_vocab"),
    ({"branch_layers": 0}, "branch_layers"),
    ({"branch_dim": -4}, "branch_dim"),
    ({"branch_dropout": 1.0}, "branch_dropout"),
    ({"speech_rope": "2d"}, "speech_rope"),
    ({"max_speech_len": 0}, "max_speech_len"),
    ({"min_len_ratio": 30.0}, "min_len_ratio"),
    ({"tap_layer": 1.5}, "tap_layer"),
])
def test_bad_configs(bad, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(**bad)


def test_configs_that_do_not_fit_the_backbone():
    with pytest.raises(ConfigError, match="tap_layer"):
        VivoModel(T2IBackbone(CFG), _cfg(tap_layer=2))
    with pytest.raises(ConfigError, match="divisible"):
        VivoModel(T2IBackbone(CFG), _cfg(branch_heads=3))
    with pytest.raises(ConfigError, match="T2IBackbone"):
        VivoModel(nn.Linear(2, 2), _cfg())
    backbone = T2IBackbone(CFG)
    VivoModel(backbone, _cfg())
    with pytest.raises(ConfigError, match="already carries LoRA"):
        VivoModel(backbone, _cfg())


def test_config_dict_round_trip_and_strict_keys():
    cfg = _cfg(speech_rope="zero_prefix", tap_layer=-2, branch_dim=64)
    assert VivoConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(branch_layers=3).branch_layers == 3
    with pytest.raises(ConfigError, match="unknown"):
        VivoConfig.from_dict({**cfg.to_dict(), "branch_depth": 3})
    with pytest.raises(ConfigError, match="r must be"):
        VivoConfig.from_dict({**cfg.to_dict(), "lora": {"r": 0}})


def _inputs(B: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(B, L, C), torch.ones(B, L, dtype=torch.bool)


@pytest.mark.parametrize("change,match", [
    ({"feats": torch.randn(2, L, C + 1)}, "caption features"),
    ({"feats": torch.randn(2, L - 1, C)}, "caption features"),
    ({"feats": torch.randn(0, L, C), "mask": torch.ones(0, L, dtype=torch.bool)}, "no prompts"),
    ({"mask": torch.ones(3, L, dtype=torch.bool)}, "caption mask"),
    ({"seed": [1, 2, 3]}, "seeds"),
    ({"speech_seed": [1]}, "speech seeds"),
    ({"min_len": [1, 2, 3]}, "min_len"),
    ({"max_len": 21}, "max_len"),
    ({"min_len": 5, "max_len": 4}, "exceeds"),
    ({"image": False, "speech": False}, "nothing to generate"),
    ({"chunk_codes": 0}, "chunk_codes"),
    ({"speech_decoder": StreamingCodec(CodecConfig.preset("tiny", codebook_size=K + 1))}, "codes"),
    ({"speech_decoder": [StreamingCodec(CodecConfig.preset("tiny", codebook_size=K)).stream_decoder(1)]},
     "decoders"),
])
def test_bad_generation_inputs_fail_at_the_call(model, change, match):
    feats, mask = _inputs()
    kw = {"feats": feats, "mask": mask, **change}
    with pytest.raises(InputError, match=match):
        generate(model, kw.pop("feats"), kw.pop("mask"), **kw)  # eager: no iteration needed
    assert model.backbone.cache_shape == (0, 0)  # nothing was allocated


def test_generate_needs_the_model():
    feats, mask = _inputs()
    with pytest.raises(InputError, match="VivoModel"):
        generate(T2IBackbone(CFG), feats, mask)


@pytest.mark.parametrize("change,match", [
    ({"lengths": torch.tensor([1, 2, 3])}, "lengths"),
    ({"lengths": torch.tensor([1.0, 2.0])}, "lengths"),
    ({"lengths": torch.tensor([1, 6])}, r"lie in \[0, 5\]"),
    ({"codes": torch.full((2, 5), K)}, "outside"),
    ({"codes": torch.zeros(2, 5)}, "integer codes"),
    ({"codes": torch.zeros(2, 21, dtype=torch.long)}, "max_speech_len"),
    ({"feats": torch.randn(2, L, C - 1)}, "caption features"),
    ({"mask": torch.ones(2, L - 2, dtype=torch.bool)}, "caption mask"),
])
def test_bad_training_inputs(model, change, match):
    feats, mask = _inputs()
    kw = {"feats": feats, "mask": mask, "codes": torch.zeros(2, 5, dtype=torch.long),
          "lengths": torch.tensor([5, 2]), **change}
    with pytest.raises(InputError, match=match):
        model.speech_loss(kw["feats"], kw["mask"], kw["codes"], kw["lengths"])
