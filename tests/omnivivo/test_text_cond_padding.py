"""The rule both text conditioners share: truncation + EOS + right padding of ids, left padding of features
equal to LlamaGen's rotation (``sample_t2i.py``), the caption-list checks and the protocol."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from aromni.errors import InputError
from aromni.omnivivo.text_conditioner import TextConditioner, check_texts, left_pad, pad_token_ids

PAD, EOS = 0, 1


@pytest.mark.parametrize(("ids", "length", "expected", "valid"), [
    ([], 4, [EOS, PAD, PAD, PAD], 1),  # an empty caption is EOS alone
    ([7, 8], 4, [7, 8, EOS, PAD], 3),
    ([7, 8, 9], 4, [7, 8, 9, EOS], 4),  # exactly L - 1 tokens: no padding
    ([7, 8, 9, 10, 11], 4, [7, 8, 9, EOS], 4),  # truncated to the first L - 1, EOS kept
    ([7, 8], 1, [EOS], 1),
])
def test_pad_token_ids(ids: list[int], length: int, expected: list[int], valid: int):
    out, mask = pad_token_ids([ids], length, PAD, EOS)
    assert out.tolist() == [expected] and out.dtype == torch.long
    assert mask.tolist() == [[True] * valid + [False] * (length - valid)]


def test_pad_token_ids_refuses_zero_length():
    with pytest.raises(InputError, match="max_length"):
        pad_token_ids([[3]], 0, PAD, EOS)


def _llamagen_rotation(emb: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``sample_t2i.py``'s left padding, written out: rotate each row by its valid count, flip the mask and
    multiply the features by it."""
    rows = []
    for e, m in zip(emb, mask):
        n = int(m.sum())
        rows.append(torch.cat([e[n:], e[:n]]))
    new_mask = torch.flip(mask, dims=[-1])
    return torch.stack(rows) * new_mask[:, :, None], new_mask


def test_left_pad_equals_llamagen_rotation():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(4, 10, 6, generator=g)  # pad rows hold encoder output too, as T5's do
    lengths = torch.tensor([1, 4, 10, 7])
    mask = torch.arange(10)[None, :] < lengths[:, None]
    feats, out_mask = left_pad(emb, mask, 10)
    ref, ref_mask = _llamagen_rotation(emb, mask)
    assert torch.equal(out_mask, ref_mask.bool())
    assert torch.equal(feats, ref)
    assert (feats[~out_mask] == 0).all() and feats[~out_mask].numel() == (10 - lengths).sum() * 6
    assert not (feats[out_mask] == 0).all(dim=-1).any()


def test_left_pad_extends_short_outputs():
    emb = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    feats, out_mask = left_pad(emb, mask, 5)
    assert feats.shape == (2, 5, 4)
    assert out_mask.tolist() == [[False] * 3 + [True] * 2, [False] * 2 + [True] * 3]
    assert torch.equal(feats[0, 3:], emb[0, :2]) and torch.equal(feats[1, 2:], emb[1])
    assert (feats[0, :3] == 0).all() and (feats[1, :2] == 0).all()


def test_left_pad_refuses_a_mask_that_is_not_right_padded():
    with pytest.raises(InputError, match="right-padded"):
        left_pad(torch.zeros(1, 3, 2), torch.tensor([[False, True, True]]), 3)


@pytest.mark.parametrize("bad", [[], "a caption", b"bytes", None, 3, [1], ["ok", None], ["\ud800"]])
def test_check_texts_refuses(bad: object):
    with pytest.raises(InputError):
        check_texts(bad)


def test_check_texts_accepts_tuples_and_empty_strings():
    assert check_texts(("a", "")) == ["a", ""]


class _Constant:
    dim = 2
    max_length = 3

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(len(texts), 3, 2), torch.ones(len(texts), 3, dtype=torch.bool)


def test_protocol_is_structural():
    assert isinstance(_Constant(), TextConditioner)
    assert not isinstance(object(), TextConditioner)
