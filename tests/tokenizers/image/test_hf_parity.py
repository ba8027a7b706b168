"""Our encoder + quantizer against transformers' ChameleonVQVAE, and loading HF Chameleon safetensors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from aromni.errors import AromniError
from aromni.tokenizers.image.config import VQGANConfig
from aromni.tokenizers.image.vqgan import VQGAN

transformers = pytest.importorskip("transformers")

# HF hard-codes GroupNorm(32), so every width is a multiple of 32. attn_resolutions [16] puts attention blocks
# inside level 1 as well as in the middle.
HF_VQ = dict(embed_dim=32, num_embeddings=96, latent_channels=48, resolution=32, in_channels=3, base_channels=32,
             channel_multiplier=[1, 2], num_res_blocks=2, attn_resolutions=[16], dropout=0.0, attn_type="vanilla",
             double_latent=False)


def hf_model() -> torch.nn.Module:
    from transformers import ChameleonVQVAEConfig
    from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAE

    torch.manual_seed(0)
    m = ChameleonVQVAE(ChameleonVQVAEConfig(**HF_VQ)).eval()
    with torch.no_grad():  # non-trivial weights everywhere (GroupNorm affine too), codebook spread like z
        for name, p in m.named_parameters():
            p.normal_(0.0, 0.3 if "norm" not in name else 0.2).add_(1.0 if name.endswith("norm.weight") else 0.0)
        z = m.quant_conv(m.encoder(torch.rand(4, 3, 32, 32) * 2 - 1)).permute(0, 2, 3, 1).reshape(-1, 32)
        m.quantize.embedding.weight.copy_(z[torch.randperm(len(z))[:96]] + 0.05 * torch.randn(96, 32))
    return m


def ours_from(hf: torch.nn.Module) -> VQGAN:
    model = VQGAN(VQGANConfig.from_hf(HF_VQ), with_decoder=False).eval()
    # HF and Meta share key names, so the mapping is the identity.
    model.load_state_dict(hf.state_dict(), strict=True)
    return model


def test_codes_match_transformers_on_the_same_weights():
    hf = hf_model()
    ours = ours_from(hf)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = hf.encode(x)
        codes = ours.encode(x)
        q = ours.quantize_images(x)
    assert codes.shape == (3, 16 * 16)
    assert torch.equal(codes, ref.image_tokens.view(3, -1))
    assert torch.equal(q.z_q, ref.quantized_last_hidden_state)
    assert codes.unique().numel() > 20  # the comparison is not between two constant outputs


def test_hf_safetensors_sharded_load_encodes_and_refuses_to_decode(tmp_path):
    hf = hf_model()
    vq = {f"model.vqmodel.{k}": v.contiguous() for k, v in hf.state_dict().items()}
    lm = {"model.embed_tokens.weight": torch.zeros(8, 4), "lm_head.weight": torch.zeros(8, 4)}
    save_file(lm, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file(vq, str(tmp_path / "model-00002-of-00002.safetensors"))
    weight_map = {**{k: "model-00001-of-00002.safetensors" for k in lm},
                  **{k: "model-00002-of-00002.safetensors" for k in vq}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "chameleon", "vq_config": HF_VQ}))

    model = VQGAN.from_hf_chameleon(tmp_path)
    assert not model.has_decoder and model.grid == (16, 16) and model.codebook_size == 96
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.encode(x), hf.encode(x).image_tokens.view(2, -1))
    with pytest.raises(AromniError, match="no decoder weights.*vqgan.ckpt"):
        model.decode(torch.zeros(1, 256, dtype=torch.long))
    model.save_pretrained(tmp_path / "ours")  # an encoder-only tokenizer stays encoder-only in our format
    again = VQGAN.from_pretrained(tmp_path / "ours")
    assert not again.has_decoder and torch.equal(again.encode(x), model.encode(x))


def test_hf_dir_without_vq_config_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(AromniError, match="no vq_config"):
        VQGAN.from_hf_chameleon(tmp_path)
