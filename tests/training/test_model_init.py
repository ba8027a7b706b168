"""``model.image_embed_init``: the decoder's image-code embedding rows start from a VQGAN codebook."""

import pytest
import torch

from aromni.errors import ConfigError
from aromni.tokenizers.image.config import VQGANConfig
from aromni.tokenizers.image.vqgan import VQGAN
from aromni.training.config import ModelConfig
from aromni.training.model_init import build_decoder, load_image_codebook, project_codebook
from aromni.utils.io import atomic_write_json
from aromni.vocab.layout import VocabLayout

DECODER = {"dim": 16, "n_layers": 1, "n_heads": 2, "ffn_dim": 32, "max_seq_len": 32}


def _vqgan_dir(tmp_path, n_embed: int = 16, seed: int = 0):
    """A tiny VQGAN tokenizer directory whose codebook is seeded random vectors [n_embed, 8]."""
    torch.manual_seed(seed)
    model = VQGAN(VQGANConfig.preset("toy", embed_dim=8, n_embed=n_embed, z_channels=8, resolution=16, ch=8,
                                     ch_mult=[1, 2], num_res_blocks=1, norm_groups=4))
    with torch.no_grad():
        model.quantize.embedding.weight.normal_(0, 1, generator=torch.Generator().manual_seed(seed))
    path = tmp_path / f"vq{n_embed}"
    model.save_pretrained(path)
    return path, model.quantize.embedding.weight.detach().clone()


def test_image_rows_are_the_projected_codebook_and_other_rows_untouched(tmp_path):
    layout = VocabLayout.compact(n_text=30, n_image=16, n_speech=20)
    path, codebook = _vqgan_dir(tmp_path)
    plain, _, _ = build_decoder(ModelConfig(decoder=DECODER), layout, seed=3)
    init, _, notes = build_decoder(ModelConfig(decoder=DECODER, image_embed_init=str(path)), layout, seed=3)
    assert notes["image_embed_init"] == str(path)
    ids = layout.image.to_ids(torch.arange(16))
    other = torch.ones(layout.vocab_size, dtype=torch.bool)
    other[ids] = False
    w0, w1 = plain.embed.weight.detach(), init.embed.weight.detach()
    assert torch.equal(w0[other], w1[other])  # text, speech and special rows: the same random init
    std = float(w0.std())
    expected = project_codebook(codebook, 16, std, torch.Generator().manual_seed(3))
    assert torch.allclose(w1[ids], expected)
    assert float(w1[ids].std()) == pytest.approx(std, rel=1e-4)
    # the projection keeps the geometry: pairwise distances of the centred codebook, up to one scale factor
    d_code, d_row = torch.cdist(codebook, codebook), torch.cdist(w1[ids], w1[ids])
    ratio = d_row[d_code > 0] / d_code[d_code > 0]
    assert torch.allclose(ratio, ratio.mean().expand_as(ratio), rtol=1e-3)
    # every other parameter is untouched too
    for (name, p0), (_, p1) in zip(plain.named_parameters(), init.named_parameters()):
        if name != "embed.weight":
            assert torch.equal(p0, p1), name


def test_a_bundle_directory_names_its_image_tokenizer(tmp_path):
    path, codebook = _vqgan_dir(tmp_path)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    path.rename(bundle / "image")
    atomic_write_json(bundle / "config.json", {"format": "aromni", "bundle": {"tokenizers": {"image": "image"}}})
    assert torch.equal(load_image_codebook(bundle), codebook)
    atomic_write_json(bundle / "config.json", {"format": "aromni", "bundle": {"tokenizers": {"text": "text"}}})
    with pytest.raises(ConfigError, match="has no image tokenizer"):
        load_image_codebook(bundle)


def test_a_codebook_of_the_wrong_size_is_a_config_error(tmp_path):
    layout = VocabLayout.compact(n_text=30, n_image=16, n_speech=20)
    path, _ = _vqgan_dir(tmp_path, n_embed=32)
    with pytest.raises(ConfigError, match="the VQGAN has 32 codes but the layout 16 image ids"):
        build_decoder(ModelConfig(decoder=DECODER, image_embed_init=str(path)), layout)


def test_bad_paths_and_combinations_are_config_errors(tmp_path):
    layout = VocabLayout.compact(n_text=30, n_image=16, n_speech=20)
    with pytest.raises(ConfigError, match="has no config.json"):
        build_decoder(ModelConfig(decoder=DECODER, image_embed_init=str(tmp_path / "missing")), layout)
    with pytest.raises(ConfigError, match="applies to a model trained from scratch"):
        ModelConfig(init_from=str(tmp_path), image_embed_init=str(tmp_path))


def test_a_wider_codebook_than_the_model_is_projected_down():
    codebook = torch.randn(10, 32, generator=torch.Generator().manual_seed(0))
    rows = project_codebook(codebook, 16, 0.02, torch.Generator().manual_seed(0))
    assert rows.shape == (10, 16) and float(rows.std()) == pytest.approx(0.02, rel=1e-4)
