"""CosyVoice2's FSQ: every index survives levels -> index -> levels, the index is the release's sum of
(level + 1) * 3**j, rounding passes gradients straight through, and the quantiser matches the released formula."""

from __future__ import annotations

import itertools

import torch

from aromni.cosyvoice.fsq import FSQ, SCALE


def test_every_index_round_trips_through_its_levels():
    fsq = FSQ(dim=8, code_dims=5)
    codes = torch.arange(fsq.codebook_size)
    levels = fsq.codes_to_levels(codes)
    assert levels.shape == (243, 5) and set(levels.unique().tolist()) == {-1.0, 0.0, 1.0}
    assert torch.equal(fsq.levels_to_codes(levels), codes)
    # and the other way: every level vector maps to a distinct index and back
    grid = torch.tensor(list(itertools.product([-1.0, 0.0, 1.0], repeat=5)))
    idx = fsq.levels_to_codes(grid)
    assert idx.unique().numel() == 243 and torch.equal(fsq.codes_to_levels(idx), grid)


def test_index_is_the_released_sum_of_shifted_levels_times_powers_of_three():
    fsq = FSQ(dim=4, code_dims=3)
    levels = torch.tensor([[-1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    # (0 + 1*3 + 2*9), (2 + 2*3 + 2*9), 0
    assert fsq.levels_to_codes(levels).tolist() == [21, 26, 0]


def test_quantize_is_tanh_scaled_rounded_like_the_release():
    torch.manual_seed(0)
    fsq = FSQ(dim=16, code_dims=8)
    x = torch.randn(3, 7, 16) * 3
    levels, codes = fsq.quantize(x)
    h = (torch.tanh(fsq.project_down(x)) * SCALE).round() + 1  # S3Tokenizer's FSQCodebook.encode
    expected = (h * 3 ** torch.arange(8)).sum(-1).long()
    assert torch.equal(codes, expected) and codes.shape == (3, 7)
    assert 0 <= int(codes.min()) and int(codes.max()) < 6561
    assert torch.equal(levels, h - 1)


def test_rounding_passes_gradients_straight_through():
    torch.manual_seed(0)
    fsq = FSQ(dim=8, code_dims=4)
    x = torch.randn(5, 8, requires_grad=True)
    out = fsq(x)
    out.up.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert fsq.project_down.weight.grad is not None and fsq.project_down.weight.grad.abs().sum() > 0
    # the STE gradient of the levels is the tanh path's gradient: d levels / d pre-activation = SCALE * (1 - tanh^2)
    z = torch.randn(6, 4, requires_grad=True)
    q = z.tanh() * SCALE
    (q + (q.round() - q).detach()).sum().backward()
    assert torch.allclose(z.grad, SCALE * (1 - z.detach().tanh() ** 2))


def test_embed_codes_equals_proj_up_of_the_quantised_levels():
    torch.manual_seed(0)
    fsq = FSQ(dim=8, code_dims=4)
    out = fsq(torch.randn(2, 5, 8))
    assert torch.allclose(fsq.embed_codes(out.codes), out.up, atol=1e-6)
