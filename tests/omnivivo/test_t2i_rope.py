"""LlamaGen's RoPE tables against hand computation: the 2-D layout, the interleaved pair convention, the zero
prefix (q and k of caption tokens exactly 0 in every layer) and per-row tables."""

from __future__ import annotations

import math

import pytest
import torch

from aromni.errors import InputError
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone
from aromni.omnivivo.t2i_rope import apply_rope, rope_1d, rope_2d, row_tables, select_rope


def test_rope_2d_matches_hand_computation_on_a_2x2_grid():
    # head_dim 8 -> 4 rotary pairs; frequencies base^(-2k/4) for k = 0, 1 -> 1 and 1/100 (base 10000).
    # Pairs 0, 1 rotate by row * f, pairs 2, 3 by col * f; position p = row * 2 + col; 3 zero prefix rows.
    table = rope_2d(grid_size=2, head_dim=8, base=10000.0, cls_token_num=3)
    assert table.shape == (3 + 4, 4, 2) and table.dtype == torch.float32
    assert torch.equal(table[:3], torch.zeros(3, 4, 2))
    freqs = [1.0, 0.01]
    for row in range(2):
        for col in range(2):
            angles = [row * f for f in freqs] + [col * f for f in freqs]
            expected = torch.tensor([[math.cos(a), math.sin(a)] for a in angles])
            torch.testing.assert_close(table[3 + row * 2 + col], expected, rtol=0, atol=1e-6)


def test_rope_1d_zero_prefix_and_real_prefix():
    # head_dim 4 -> frequencies base^(-0/4), base^(-2/4) = 1, 1/100.
    zero = rope_1d(seq_len=3, head_dim=4, base=10000.0, cls_token_num=2)
    real = rope_1d(seq_len=3, head_dim=4, base=10000.0, cls_token_num=2, zero_prefix=False)
    assert zero.shape == real.shape == (5, 2, 2)
    assert torch.equal(zero[:2], torch.zeros(2, 2, 2))
    for pos in range(3):  # LlamaGen: the first image token has position 0 after the zero rows
        expected = torch.tensor([[math.cos(pos * f), math.sin(pos * f)] for f in (1.0, 0.01)])
        torch.testing.assert_close(zero[2 + pos], expected, rtol=0, atol=1e-6)
    for pos in range(5):  # real prefix: positions run through the whole sequence from 0
        expected = torch.tensor([[math.cos(pos * f), math.sin(pos * f)] for f in (1.0, 0.01)])
        torch.testing.assert_close(real[pos], expected, rtol=0, atol=1e-6)


def test_apply_rope_rotates_interleaved_pairs_not_halves():
    # A unit vector on channel 0 rotated by angle a on pair 0 must land on channels (0, 1), not (0, D/2).
    a = 0.7
    table = torch.zeros(1, 4, 2)
    table[0, :, 0] = 1.0  # identity on every pair ...
    table[0, 0] = torch.tensor([math.cos(a), math.sin(a)])  # ... except pair 0
    x = torch.zeros(1, 1, 1, 8)
    x[..., 0] = 1.0
    out = apply_rope(x, select_rope(table, None, 1))
    expected = torch.zeros(8)
    expected[0], expected[1] = math.cos(a), math.sin(a)
    torch.testing.assert_close(out.flatten(), expected)
    # And the rotation equals complex multiplication of interleaved (re, im) pairs (LlamaGen's formulation).
    x = torch.randn(2, 5, 3, 8)
    table = rope_2d(2, 8, cls_token_num=1)
    ref = torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (4, 2)))
                             * torch.view_as_complex(table)[None, :, None]).flatten(-2)
    torch.testing.assert_close(apply_rope(x, select_rope(table, None, 5)), ref)


def test_apply_rope_keeps_dtype_and_computes_in_float32():
    x = torch.randn(1, 4, 2, 8, dtype=torch.bfloat16)
    table = rope_1d(4, 8)
    out = apply_rope(x, select_rope(table, None, 4))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, apply_rope(x.float(), select_rope(table, None, 4)).bfloat16())


def test_select_rope_shared_and_per_row():
    a, b = rope_2d(2, 8, cls_token_num=2), rope_1d(6, 8, zero_prefix=False)
    rows = row_tables([a, b])
    assert rows.shape == (2, 6, 4, 2)
    pos = torch.tensor([3, 4])
    assert torch.equal(select_rope(a, pos, 2), a[pos][None, :, None])
    per_row = select_rope(rows, pos, 2)
    assert per_row.shape == (2, 2, 1, 4, 2)
    assert torch.equal(per_row[0, :, 0], a[pos]) and torch.equal(per_row[1, :, 0], b[pos])
    with pytest.raises(InputError, match="RoPE table covers"):
        select_rope(a, None, 7)


def _captured_qk(model: T2IBackbone, feats: torch.Tensor, codes: torch.Tensor, rope: torch.Tensor | None = None
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """q, k of every layer in a teacher-forced forward (recomputed from each attention's input)."""
    inputs: list[torch.Tensor] = []
    hooks = [layer.attention.register_forward_pre_hook(lambda mod, args: inputs.append(args[0]))
             for layer in model.layers]
    model(feats, codes, rope=rope)
    for h in hooks:
        h.remove()
    T = inputs[0].shape[1]
    table = model.rope_table() if rope is None else rope
    return [layer.attention.project(x, select_rope(table, None, T))[:2] for layer, x in zip(model.layers, inputs)]


def test_zero_prefix_quirk_q_and_k_of_the_caption_are_exactly_zero_in_every_layer():
    cfg = T2IConfig.preset("toy")
    model = T2IBackbone(cfg).eval()
    model.init_weights(zero_output=False)
    feats, codes = torch.randn(2, cfg.cls_token_num, cfg.caption_dim), torch.randint(0, cfg.vocab_size, (2, 9))
    L = cfg.cls_token_num
    with torch.no_grad():
        qks = _captured_qk(model, feats, codes)
        assert len(qks) == cfg.n_layer
        for q, k in qks:  # [B, H, T, D]
            assert torch.count_nonzero(q[:, :, :L]) == 0 and torch.count_nonzero(k[:, :, :L]) == 0
            assert q[:, :, L:].abs().amax() > 0.01 and k[:, :, L:].abs().amax() > 0.01  # image tokens rotate
        # A 1-D table with real prefix rotations (omnivivo.md §4.4 option A) gives the caption real keys.
        real = rope_1d(cfg.block_size, cfg.head_dim, cfg.rope_base, L, zero_prefix=False)
        for q, k in _captured_qk(model, feats, codes, rope=real):
            assert k[:, :, :L].abs().amax() > 0.01 and q[:, :, :L].abs().amax() > 0.01
