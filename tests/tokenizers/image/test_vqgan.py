"""VQGAN tokenizer behaviour: shapes, row-major code order, input validation, PIL input, load_tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from aromni.errors import ConfigError, InputError
from aromni.tokenizers.base import ImageTokenizer, load_tokenizer
from aromni.tokenizers.image.config import VQGANConfig
from aromni.tokenizers.image.preprocess import preprocess
from aromni.tokenizers.image.vqgan import VQGAN

CFG = VQGANConfig(embed_dim=8, n_embed=48, z_channels=8, resolution=32, ch=8, ch_mult=(1, 2, 2), num_res_blocks=1,
                  attn_resolutions=(16,), norm_groups=4)


@pytest.fixture(scope="module")
def model() -> VQGAN:
    torch.manual_seed(0)
    m = VQGAN(CFG).eval()
    with torch.no_grad():  # spread the codebook over the encoder's outputs so codes vary
        z = m.quant_conv(m.encoder(torch.rand(8, 3, 32, 32) * 2 - 1)).permute(0, 2, 3, 1).reshape(-1, 8)
        m.quantize.embedding.weight.copy_(z[torch.randperm(len(z))[:48]])
    return m


def test_protocol_facts(model):
    assert isinstance(model, ImageTokenizer) and model.modality == "image"
    assert model.grid == (8, 8) and model.codes_per_image == 64 and model.image_size == 32
    meta = model.metadata()
    assert meta["codebook_size"] == 48 and meta["grid"] == [8, 8] and meta["has_decoder"]


def test_encode_is_row_major_nearest_codebook_entry(model):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    codes = model.encode(x)
    assert codes.shape == (2, 64) and codes.dtype == torch.long
    with torch.no_grad():
        z = model.quant_conv(model.encoder(x))  # [B, D, 8, 8]
    e = model.quantize.embedding.weight
    for b in range(2):
        for r in range(8):
            for c in range(8):
                d = ((z[b, :, r, c][None] - e) ** 2).sum(1)
                assert codes[b, r * 8 + c] == torch.argmin(d), (b, r, c)
    assert codes.unique().numel() > 8


def test_decode_places_code_i_at_row_i_div_w_column_i_mod_w(model):
    codes = torch.randint(0, 48, (2, 64))
    out = model.decode(codes)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
    e = model.quantize.embedding.weight
    z = torch.zeros(2, 8, 8, 8)
    for b in range(2):
        for i in range(64):
            z[b, :, i // 8, i % 8] = e[codes[b, i]]
    with torch.no_grad():
        ref = model.decoder(model.post_quant_conv(z))
    assert torch.equal(out, ref)


def test_quantizer_flattening_recovers_an_identity_grid(model):
    # z whose position (r, c) holds codebook row r*w+c must quantize to 0..h*w-1 in order.
    q = model.quantize
    big = VQGAN(CFG.replace(n_embed=64)).quantize
    with torch.no_grad():
        big.embedding.weight.copy_(torch.randn(64, 8) * 3)
    z = big.lookup(torch.arange(64).view(1, 64), (8, 8))
    assert torch.equal(big(z).codes, torch.arange(64).view(1, 64))
    assert q.lookup(torch.tensor([[5, 7]]), (1, 2))[0, :, 0, 1].equal(q.embedding.weight[7])


def test_pil_inputs_are_preprocessed_like_the_reference(model):
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (50, 40, 4), dtype=np.uint8), "RGBA"),
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB")]
    assert torch.equal(model.encode(imgs), model.encode(preprocess(imgs, 32)))
    assert torch.equal(model.encode(imgs[1]), model.encode(preprocess(imgs[1:], 32)))


def test_bad_inputs_raise_input_errors(model):
    with pytest.raises(InputError, match=r"\[B, 3, 32, 32\]"):
        model.encode(torch.zeros(1, 3, 16, 16))
    with pytest.raises(InputError, match="PIL images or a tensor"):
        model.encode(["not an image"])
    with pytest.raises(InputError, match="64"):
        model.decode(torch.zeros(1, 63, dtype=torch.long))
    with pytest.raises(InputError, match="out of range"):
        model.decode(torch.full((1, 64), 48))
    with pytest.raises(InputError, match="integer codes"):
        model.decode(torch.zeros(1, 64))


def test_bad_configs_raise_config_errors():
    with pytest.raises(ConfigError, match="norm_groups"):
        VQGANConfig(ch=12, norm_groups=8)
    with pytest.raises(ConfigError, match="divisible"):
        VQGANConfig(resolution=36, ch_mult=(1, 2, 2, 4))
    with pytest.raises(ConfigError, match="unknown fields"):
        VQGANConfig.from_dict({"chh": 3})


def test_load_tokenizer_opens_a_saved_vqgan(model, tmp_path):
    model.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert isinstance(again, VQGAN) and torch.equal(again.encode(x), model.encode(x))
    pil = again.to_pil(again.decode(again.encode(x)))
    assert len(pil) == 1 and pil[0].size == (32, 32) and pil[0].mode == "RGB"
