"""LlamaGen VQ model behaviour.

Covers the l2-normalised quantizer (hand-computed), straight-through gradients, the usage window,
encode/decode shapes and row-major order, batch independence, LlamaGen's pre/post-processing, and the VQ-16
architecture's size and keys (numbers from omnivivo.md §2 and §4.1, measured there on the original code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from aromni.errors import InputError
from aromni.tokenizers.base import ImageTokenizer
from aromni.tokenizers.image.llamagen_vq import (
    LlamaGenQuantizer,
    LlamaGenVQ,
    preprocess_llamagen,
    to_pil_llamagen,
)
from aromni.tokenizers.image.llamagen_vq_config import LlamaGenVQConfig

TOY = LlamaGenVQConfig.preset("toy")


@pytest.fixture(scope="module")
def model() -> LlamaGenVQ:
    torch.manual_seed(0)
    return LlamaGenVQ(TOY).eval()


def quantizer(rows: list[list[float]], *, l2: bool = True, show_usage: bool = True) -> LlamaGenQuantizer:
    cfg = LlamaGenVQConfig(codebook_size=len(rows), codebook_embed_dim=len(rows[0]), codebook_l2_norm=l2,
                           codebook_show_usage=show_usage)
    q = LlamaGenQuantizer(cfg)
    with torch.no_grad():
        q.embedding.weight.copy_(torch.tensor(rows))
    return q


def grid_of(*vectors: tuple[float, float]) -> torch.Tensor:
    """2-d vectors -> ``z [1, 2, 1, n]`` (one row of n positions)."""
    return torch.tensor(vectors, dtype=torch.float32).t().reshape(1, 2, 1, len(vectors))


# ------------------------------------------------------------------------------------------------ quantizer
def test_nearest_code_is_chosen_on_the_unit_sphere():
    # e0 = (0.5, 0.5) is near in plain L2, e1 = (10, 0) is near in direction. z1 = (1, 0.3) (16.7 deg) is
    # nearer e0 by plain distance (0.29 vs 81.1) but nearer e1 by angle. z2 = (0.2, 1) (78.7 deg) is nearer e0
    # either way.
    z = grid_of((1.0, 0.3), (0.2, 1.0))
    q = quantizer([[0.5, 0.5], [10.0, 0.0]]).eval()
    out = q(z)
    assert out.codes.tolist() == [[1, 0]]
    assert quantizer([[0.5, 0.5], [10.0, 0.0]], l2=False).eval()(z).codes.tolist() == [[0, 0]]
    # z_q holds the normalised codebook rows, channel-first, in row-major position order.
    s = math.sqrt(0.5)
    assert out.z_q.shape == (1, 2, 1, 2)
    assert torch.allclose(out.z_q[0, :, 0, 0], torch.tensor([1.0, 0.0]), atol=1e-6)
    assert torch.allclose(out.z_q[0, :, 0, 1], torch.tensor([s, s]), atol=1e-6)
    # losses by hand: mean over the 4 numbers of (e_hat - z_hat)^2; commitment weighted by beta = 0.25
    n1, n2 = math.sqrt(1.09), math.sqrt(1.04)
    sq = ((1 - 1 / n1) ** 2 + (0.3 / n1) ** 2 + (s - 0.2 / n2) ** 2 + (s - 1 / n2) ** 2) / 4
    assert out.codebook_loss.item() == pytest.approx(sq, rel=1e-5)
    assert out.commit_loss.item() == pytest.approx(0.25 * sq, rel=1e-5)
    assert out.entropy_loss.item() == 0.0 and out.usage == 0.0  # ratio 0; eval mode reports no usage
    assert torch.allclose(q.get_codebook_entry(out.codes, (1, 2, 1, 2)), out.z_q, atol=1e-6)


def test_straight_through_gradient_reaches_the_input_and_losses_split_their_gradients():
    q = quantizer([[0.5, 0.5], [10.0, 0.0], [-1.0, 0.2]])
    z = grid_of((1.0, 0.3), (0.2, 1.0), (-2.0, -0.5)).requires_grad_(True)
    g = torch.tensor([[[[0.3, -1.2, 0.7]], [[2.0, 0.5, -0.4]]]])
    (q(z).z_q * g).sum().backward()
    # z_q = z_hat + sg(e - z_hat): the gradient is that of the normalised input, and the codebook gets none.
    want, = torch.autograd.grad((F.normalize(z, dim=1) * g).sum(), z)
    assert z.grad is not None and z.grad.abs().sum() > 0 and torch.allclose(z.grad, want, atol=1e-6)
    assert q.embedding.weight.grad is None
    z.grad = None
    q(z).commit_loss.backward()  # commitment pulls the encoder only
    assert z.grad.abs().sum() > 0 and q.embedding.weight.grad is None
    z.grad = None
    q(z).codebook_loss.backward()  # the codebook term moves the codebook only
    assert z.grad is None and q.embedding.weight.grad.abs().sum() > 0


def test_usage_window_shifts_in_training_mode_only():
    rows = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]  # directions 0, 90, 180, 270 degrees
    q = quantizer(rows).train()
    deg = lambda a: (math.cos(math.radians(a)), math.sin(math.radians(a)))  # noqa: E731
    out = q(grid_of(deg(10), deg(100), deg(260)))
    assert out.codes.tolist() == [[0, 1, 3]]
    window = q.codebook_used
    assert window.shape == (65536,) and window[-3:].tolist() == [0.0, 1.0, 3.0]
    assert window[:-3].abs().sum() == 0
    assert out.usage == pytest.approx(3 / 4)  # distinct {0, 1, 3}: the zero-filled start counts as code 0
    out = q(grid_of(deg(265), deg(275), deg(170)))
    assert window[-6:].tolist() == [0.0, 1.0, 3.0, 3.0, 3.0, 2.0] and out.usage == 1.0
    before = window.clone()
    assert q.eval()(grid_of(deg(90))).usage == 0.0 and torch.equal(window, before)
    no_usage = quantizer(rows, show_usage=False).train()
    assert "codebook_used" not in no_usage.state_dict() and no_usage(grid_of(deg(0))).usage == 0.0


def test_entropy_term_is_on_only_when_weighted():
    cfg = LlamaGenVQConfig(codebook_size=3, codebook_embed_dim=2, entropy_loss_ratio=0.5)
    q = LlamaGenQuantizer(cfg).eval()
    out = q(grid_of((1.0, 0.3), (0.2, 1.0)))
    assert out.entropy_loss.item() != 0.0 and math.isfinite(out.entropy_loss.item())


# ------------------------------------------------------------------------------------------------ model
def test_protocol_facts(model):
    assert isinstance(model, ImageTokenizer) and model.modality == "image"
    assert model.type_name == "llamagen_vq"
    assert model.image_size == 64 and model.grid == (8, 8) and model.codes_per_image == 64
    meta = model.metadata()
    assert meta["codebook_size"] == 256 and meta["preset"] == "toy" and meta["downsample_factor"] == 8


def test_encode_is_row_major_nearest_direction(model):
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    codes = model.encode(x)
    assert codes.shape == (2, 64) and codes.dtype == torch.long
    with torch.no_grad():
        z = model.quant_conv(model.encoder(x))  # [B, 8, 8, 8]
    e = F.normalize(model.quantize.embedding.weight, dim=1)
    for b in range(2):
        for r in range(8):
            for c in range(8):
                cos = e @ F.normalize(z[b, :, r, c], dim=0)  # nearest on the sphere = largest cosine
                assert codes[b, r * 8 + c] == torch.argmax(cos), (b, r, c)
    assert codes.unique().numel() > 8


def test_decode_places_code_i_at_row_i_div_w(model):
    torch.manual_seed(2)
    codes = torch.randint(0, 256, (2, 64))
    out = model.decode(codes)
    assert out.shape == (2, 3, 64, 64) and out.dtype == torch.float32
    e = F.normalize(model.quantize.embedding.weight, dim=1)
    z = torch.zeros(2, 8, 8, 8)
    for b in range(2):
        for i in range(64):
            z[b, :, i // 8, i % 8] = e[codes[b, i]]
    with torch.no_grad():
        assert torch.equal(out, model.decoder(model.post_quant_conv(z)))
        # LlamaGen's call: decode_code(flat indices, (B, D, h, w))
        assert torch.equal(out, model.decode_code(codes.reshape(-1), (2, 8, 8, 8)))


def test_encode_of_a_batch_equals_encode_of_each_image(model):
    torch.manual_seed(3)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    batch = model.encode(x)
    for i in range(3):
        assert torch.equal(batch[i:i + 1], model.encode(x[i:i + 1]))


def test_training_forward_returns_what_a_trainer_needs():
    torch.manual_seed(4)
    m = LlamaGenVQ(TOY).train()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    out = m(x)
    assert out.recon.shape == x.shape and out.quant.codes.shape == (2, 64)
    q = out.quant
    assert torch.equal(out.vq_loss, q.codebook_loss + q.commit_loss + q.entropy_loss)
    assert out.vq_loss.dim() == 0
    assert q.usage == pytest.approx(torch.unique(m.quantize.codebook_used).numel() / 256) and q.usage > 0
    assert torch.equal(m.quantize.codebook_used[-128:], q.codes.reshape(-1).float())
    (F.mse_loss(out.recon, x) + out.vq_loss).backward()
    assert m.encoder.conv_in.weight.grad.abs().sum() > 0  # through the straight-through estimator
    assert m.quantize.embedding.weight.grad.abs().sum() > 0  # through the codebook loss
    assert m.decoder.conv_out.weight.grad.abs().sum() > 0


def test_bad_inputs_raise_input_errors(model):
    with pytest.raises(InputError):
        model.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(InputError):
        model.encode(["not an image"])
    with pytest.raises(InputError):
        model.decode(torch.full((1, 64), 256))
    with pytest.raises(InputError):
        model.decode(torch.zeros(1, 63, dtype=torch.long))
    with pytest.raises(InputError):
        model.decode(torch.zeros(1, 64))


# ------------------------------------------------------------------------------------------------ pixels
def test_center_crop_halves_with_box_then_crops_the_middle():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    big = np.kron(small, np.ones((4, 4, 1), dtype=np.uint8))  # 256x256: two exact BOX halvings undo this
    x = preprocess_llamagen([Image.fromarray(big)], 64)
    want = (torch.from_numpy(small).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert x.shape == (1, 3, 64, 64) and torch.equal(x[0], want)
    # 2:1 landscape and portrait: only the middle square survives
    wide = np.zeros((64, 128, 3), dtype=np.uint8)
    wide[:, :32] = (255, 0, 0)
    wide[:, 32:96] = (0, 200, 0)
    wide[:, 96:] = (0, 0, 255)
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))
    g = (200 / 255 - 0.5) / 0.5
    for arr in (wide, tall):
        out = preprocess_llamagen([Image.fromarray(arr)], 64)[0]
        assert torch.allclose(out[1], torch.full((64, 64), g))
        assert torch.equal(out[0], torch.full((64, 64), -1.0))


def test_alpha_is_dropped_not_blended_and_pil_encode_matches_tensor_encode(model):
    rgba = np.zeros((80, 80, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 20, 30)  # fully transparent: Chameleon's preprocessing would make this white
    x = preprocess_llamagen([Image.fromarray(rgba, "RGBA")], 64)
    want = (torch.tensor([10.0, 20.0, 30.0]) / 255 - 0.5) / 0.5
    assert torch.allclose(x[0, :, 32, 32], want, atol=1e-6)
    rng = np.random.default_rng(1)
    imgs = [Image.fromarray(rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)), Image.fromarray(rgba, "RGBA")]
    assert torch.equal(model.encode(imgs), model.encode(preprocess_llamagen(imgs, 64)))


def test_to_pil_uses_llamagens_rounding():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0, -0.5]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    px = np.asarray(to_pil_llamagen(x)[0])[0, :, 0]
    # clamp(127.5 x + 128): 0 -> 128 (Chameleon's (x + 1) / 2 * 255 gives 127), -0.5 -> 64.25 -> 64
    assert px.tolist() == [0, 128, 255, 255, 64]


# ------------------------------------------------------------------------------------------------ VQ-16 size
def test_vq16_matches_llamagen_size_and_keys():
    with torch.device("meta"):
        m = LlamaGenVQ(LlamaGenVQConfig.preset("VQ-16"))
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    # omnivivo.md §2, measured on LlamaGen's VQ_16(): 71,883,403 parameters, encoder 29.3M, decoder 42.4M
    assert count(m) == 71_883_403
    assert round(count(m.encoder) / 1e6, 1) == 29.3 and round(count(m.decoder) / 1e6, 1) == 42.4
    sd = m.state_dict()
    assert len(sd) == 344  # omnivivo.md §2
    shapes = {"encoder.conv_in.weight": (128, 3, 3, 3), "quant_conv.weight": (8, 256, 1, 1),
              "post_quant_conv.weight": (256, 8, 1, 1), "quantize.embedding.weight": (16384, 8),
              "quantize.codebook_used": (65536,), "decoder.conv_in.weight": (512, 256, 3, 3),
              "decoder.conv_out.weight": (3, 128, 3, 3), "encoder.conv_out.weight": (256, 512, 3, 3),
              "encoder.conv_blocks.4.attn.1.q.weight": (512, 512, 1, 1),
              "encoder.conv_blocks.3.downsample.conv.weight": (256, 256, 3, 3),
              "encoder.conv_blocks.2.res.0.nin_shortcut.weight": (256, 128, 1, 1),
              "encoder.mid.1.proj_out.weight": (512, 512, 1, 1),
              "decoder.mid.2.conv2.weight": (512, 512, 3, 3),
              "decoder.conv_blocks.0.attn.2.k.weight": (512, 512, 1, 1),
              "decoder.conv_blocks.0.upsample.conv.weight": (512, 512, 3, 3),
              "decoder.conv_blocks.1.res.0.nin_shortcut.weight": (256, 512, 1, 1),
              "decoder.conv_blocks.4.res.2.norm2.weight": (128,)}
    assert {k: tuple(sd[k].shape) for k in shapes} == shapes
    # attention only at the deepest level; no resampler after the last level (decoder: stored last)
    assert {k.split(".")[2] for k in sd if k.startswith("encoder.conv_blocks.") and ".attn." in k} == {"4"}
    assert {k.split(".")[2] for k in sd if k.startswith("decoder.conv_blocks.") and ".attn." in k} == {"0"}
    no_resampler = ("encoder.conv_blocks.4.downsample", "decoder.conv_blocks.4.upsample")
    assert not any(k.startswith(no_resampler) for k in sd)
    # omnivivo.md §4.1: the toy analogue has encoder 1.79M / decoder 2.60M parameters
    with torch.device("meta"):
        toy = LlamaGenVQ(TOY)
    assert round(count(toy.encoder) / 1e6, 2) == 1.79 and round(count(toy.decoder) / 1e6, 2) == 2.60
