"""Per-row cache positions (continuous batching): a row prefilled into its own cache row and decoded at its own
slot computes what it computes alone, whatever the other rows hold."""

from __future__ import annotations

import pytest
import torch
from chameleon_refs import random_decoder, tiny_config

from aromni.errors import InputError


def alone(model, ids: list[int], n_prompt: int) -> torch.Tensor:
    """Logits ``[len(ids) - n_prompt + 1, V]``: prefill ``ids[:n_prompt]``, then decode the rest one by one."""
    model.setup_caches(1, 64)
    out = [model(torch.tensor([ids[:n_prompt]]), input_pos=torch.arange(n_prompt))[0, -1]]
    for t in range(n_prompt, len(ids)):
        out.append(model(torch.tensor([[ids[t]]]), input_pos=torch.tensor([t]))[0, -1])
    return torch.stack(out)


@pytest.mark.parametrize("swin_norm", [False, True])
def test_rows_at_different_lengths_equal_rows_alone(swin_norm):
    torch.set_default_dtype(torch.float64)
    model = random_decoder(tiny_config(swin_norm=swin_norm), seed=2)
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(3, 96, (n,), generator=g).tolist() for n in (20, 9, 30)]
    prompts = [5, 3, 12]  # rows join with different prompt lengths, so their slots differ at every step
    expected = [alone(model, s, p) for s, p in zip(seqs, prompts)]
    model.setup_caches(4, 64)  # row 3 stays free
    got = [[model(torch.tensor([s[:p]]), input_pos=torch.arange(p), cache_row=r)[0, -1]]
           for r, (s, p) in enumerate(zip(seqs, prompts))]
    length = list(prompts) + [0]
    for _ in range(max(len(s) - p for s, p in zip(seqs, prompts))):
        tokens = [s[n] if n < len(s) else 0 for s, n in zip(seqs, length)] + [0]
        live = [n < len(s) for s, n in zip(seqs, length)] + [False]
        pos = [n if ok else 0 for n, ok in zip(length, live)]  # finished and free rows idle at slot 0
        logits = model(torch.tensor(tokens)[:, None], row_pos=torch.tensor(pos))[:, -1]
        for r in range(3):
            if live[r]:
                got[r].append(logits[r])
                length[r] += 1
    for r in range(3):
        torch.testing.assert_close(torch.stack(got[r]), expected[r], rtol=1e-10, atol=1e-10)


def test_a_row_is_bitwise_independent_of_the_other_rows():
    model = random_decoder(tiny_config(), seed=3)
    ids = torch.arange(3, 23)[None]

    def run(other: int) -> torch.Tensor:
        model.setup_caches(3, 64)
        model(ids[:, :10], input_pos=torch.arange(10), cache_row=1)
        if other:
            model(torch.full((1, other), 7), input_pos=torch.arange(other), cache_row=2)
        out = []
        for t in range(10, 20):
            pos = torch.tensor([0, t, other + t - 10 if other else 0])
            tokens = torch.tensor([[0], [int(ids[0, t])], [9]])
            out.append(model(tokens, row_pos=pos)[1, -1])
        return torch.stack(out)

    quiet = run(0)
    assert torch.equal(run(5), quiet)
    assert torch.equal(run(40), quiet)


def test_prefilling_one_row_leaves_the_others_untouched():
    model = random_decoder(tiny_config(), seed=4)
    model.setup_caches(3, 64)
    model(torch.arange(3, 11)[None], input_pos=torch.arange(8), cache_row=0)
    before = [(layer.attn.cache.k.clone(), layer.attn.cache.v.clone()) for layer in model.layers]
    model(torch.arange(20, 32)[None], input_pos=torch.arange(12), cache_row=2)
    for (k, v), layer in zip(before, model.layers):
        assert torch.equal(layer.attn.cache.k[:2], k[:2]) and torch.equal(layer.attn.cache.v[:2], v[:2])
        assert not torch.equal(layer.attn.cache.k[2], k[2])


def test_row_call_errors():
    model = random_decoder(tiny_config(), seed=5)
    tok = torch.zeros(2, 1, dtype=torch.long)
    with pytest.raises(InputError, match="no KV cache"):
        model(tok, row_pos=torch.zeros(2, dtype=torch.long))
    model.setup_caches(2, 16)
    with pytest.raises(InputError, match="replaces input_pos"):
        model(tok, input_pos=torch.tensor([0]), row_pos=torch.zeros(2, dtype=torch.long))
    with pytest.raises(InputError, match="one token per cache row"):
        model(tok, row_pos=torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError, match="outside the cache"):
        model(tok, row_pos=torch.tensor([0, 16]))
    with pytest.raises(InputError, match="cache_row=2"):
        model(tok[:1], input_pos=torch.tensor([0]), cache_row=2)


def test_decoding_the_first_rows_only_equals_decoding_all():
    torch.set_default_dtype(torch.float64)
    model = random_decoder(tiny_config(), seed=6)
    prompts = [[4, 5, 6, 7], [8, 9]]

    def run(rows: int) -> torch.Tensor:
        model.setup_caches(6, 64)
        for r, p in enumerate(prompts):
            model(torch.tensor([p]), input_pos=torch.arange(len(p)), cache_row=r)
        tokens = torch.tensor([10, 11] + [0] * (rows - 2))[:, None]
        pos = torch.tensor([4, 2] + [0] * (rows - 2))
        return model(tokens, row_pos=pos)[:2, -1]

    torch.testing.assert_close(run(2), run(6), rtol=1e-12, atol=1e-12)


def test_row_decode_on_a_left_padded_cache_equals_the_slot_decode():
    """The static step the compiled engine uses (``row_pos``, whole cache) computes what the growing-slice step
    computes, left padding included."""
    torch.set_default_dtype(torch.float64)
    model = random_decoder(tiny_config(), seed=7)
    prompt = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    pad = torch.tensor([2, 0])
    nxt = torch.tensor([[9, 10, 11], [12, 13, 14]])
    out = []
    for static in (False, True):
        model.setup_caches(2, 16)
        logits = [model(prompt, input_pos=torch.arange(5), left_pad=pad)[:, -1]]
        for t in range(3):
            if static:
                logits.append(model(nxt[:, t:t + 1], row_pos=torch.full((2,), 5 + t))[:, -1])
            else:
                logits.append(model(nxt[:, t:t + 1], input_pos=torch.tensor([5 + t]))[:, -1])
        out.append(torch.stack(logits))
    torch.testing.assert_close(out[1], out[0], rtol=1e-10, atol=1e-10)
