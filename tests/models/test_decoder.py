"""Decoder behaviour: cached == uncached, left-padded batches == rows alone, chunked prefill, packing, bf16."""

from __future__ import annotations

import pytest
import torch
from chameleon_refs import random_decoder, tiny_config

import aromni.models.decoder as dec
from aromni.errors import InputError

TOL = 2e-5


def _tokens(V, B, T, seed=0):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("swin_norm", [False, True])
@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_incremental_decoding_equals_full_forward(swin_norm, kv_heads):
    cfg = tiny_config(swin_norm=swin_norm, n_kv_heads=kv_heads)
    model = random_decoder(cfg, seed=1)
    seq = _tokens(cfg.vocab_size, 2, 20)
    with torch.no_grad():
        full = model(seq)
        model.setup_caches(2, 32)
        P = 7
        pre = model(seq[:, :P], input_pos=torch.arange(P))
        steps = [model(seq[:, t:t + 1], input_pos=torch.tensor([t])) for t in range(P, 20)]
    got = torch.cat([pre] + steps, dim=1)
    assert (got - full).abs().max().item() <= TOL


def test_chunked_prefill_and_logits_to_keep():
    cfg = tiny_config()
    model = random_decoder(cfg, seed=2)
    seq = _tokens(cfg.vocab_size, 3, 16)
    with torch.no_grad():
        full = model(seq)
        model.setup_caches(3, 16)
        a = model(seq[:, :5], input_pos=torch.arange(5))
        b = model(seq[:, 5:12], input_pos=torch.arange(5, 12))
        c = model(seq[:, 12:], input_pos=torch.arange(12, 16), logits_to_keep=1)
    assert (torch.cat([a, b], 1) - full[:, :12]).abs().max().item() <= TOL
    assert c.shape == (3, 1, cfg.vocab_size)
    assert (c[:, 0] - full[:, -1]).abs().max().item() <= TOL


def test_reset_caches_gives_the_same_result_again():
    cfg = tiny_config()
    model = random_decoder(cfg, seed=3)
    seq = _tokens(cfg.vocab_size, 1, 10)
    with torch.no_grad():
        model.setup_caches(1, 16)
        first = model(seq, input_pos=torch.arange(10))
        model(seq[:, :1], input_pos=torch.tensor([10]))
        model.reset_caches()
        second = model(seq, input_pos=torch.arange(10))
    assert torch.equal(first, second)


@pytest.mark.parametrize("swin_norm", [False, True])
def test_left_padded_batch_rows_equal_rows_alone(swin_norm):
    cfg = tiny_config(swin_norm=swin_norm)
    model = random_decoder(cfg, seed=4)
    lengths = [9, 4, 6]
    prompts = [_tokens(cfg.vocab_size, 1, n, seed=10 + i)[0] for i, n in enumerate(lengths)]
    P, n_new = max(lengths), 6
    pad = torch.tensor([P - n for n in lengths])
    batch = torch.stack([torch.cat([torch.full((P - len(p),), 1), p]) for p in prompts])  # pad id is arbitrary
    with torch.no_grad():
        model.setup_caches(3, P + n_new)
        logits = model(batch, input_pos=torch.arange(P), left_pad=pad)[:, -1]
        batched = [logits]
        tok = logits.argmax(-1)
        for t in range(P, P + n_new):
            logits = model(tok[:, None], input_pos=torch.tensor([t]))[:, -1]
            batched.append(logits)
            tok = logits.argmax(-1)
        batched = torch.stack(batched, 1)  # [3, n_new + 1, V]

        for b, p in enumerate(prompts):
            model.setup_caches(1, P + n_new)
            n = len(p)
            logits = model(p[None], input_pos=torch.arange(n))[:, -1]
            alone = [logits]
            tok = logits.argmax(-1)
            for t in range(n, n + n_new):
                logits = model(tok[:, None], input_pos=torch.tensor([t]))[:, -1]
                alone.append(logits)
                tok = logits.argmax(-1)
            alone = torch.stack(alone, 1)[0]
            assert (batched[b] - alone).abs().max().item() <= TOL, b


def test_packed_segments_equal_separate_rows():
    cfg = tiny_config()
    model = random_decoder(cfg, seed=5)
    a, b = _tokens(cfg.vocab_size, 1, 7, 1), _tokens(cfg.vocab_size, 1, 5, 2)
    packed = torch.cat([a, b], 1)
    seg = torch.tensor([[0] * 7 + [1] * 5])
    with torch.no_grad():
        out = model(packed, segment_ids=seg)
        assert (out[:, :7] - model(a)).abs().max().item() <= TOL
        assert (out[:, 7:] - model(b)).abs().max().item() <= TOL


def test_bf16_runs_and_is_close_to_fp32():
    cfg = tiny_config()
    model = random_decoder(cfg, seed=6)
    seq = _tokens(cfg.vocab_size, 2, 12)
    with torch.no_grad():
        ref = model(seq)
        model_bf = random_decoder(cfg, seed=6).to(torch.bfloat16)
        out = model_bf(seq)
        model_bf.setup_caches(2, 16)
        cached = torch.cat([model_bf(seq[:, :6], input_pos=torch.arange(6))]
                           + [model_bf(seq[:, t:t + 1], input_pos=torch.tensor([t])) for t in range(6, 12)], 1)
    assert out.dtype == torch.float32 and model_bf.layers[0].attn.cache.k.dtype == torch.bfloat16
    scale = ref.abs().max().item()
    assert (out - ref).abs().max().item() <= 0.05 * scale
    assert (cached - ref).abs().max().item() <= 0.05 * scale
    # Most next-token choices survive the precision change.
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean().item() >= 0.8


def test_input_errors():
    cfg = tiny_config()
    model = random_decoder(cfg)
    with pytest.raises(InputError, match="token id"):
        model(torch.tensor([[cfg.vocab_size]]))
    with pytest.raises(InputError, match="setup_caches"):
        model(torch.tensor([[1]]), input_pos=torch.tensor([0]))
    model.setup_caches(1, 4)
    with pytest.raises(InputError, match="exceeds"):
        model(torch.tensor([[1, 2]]), input_pos=torch.tensor([3, 4]))
    with pytest.raises(InputError, match="rows"):
        model(torch.tensor([[1], [2]]), input_pos=torch.tensor([0]))


def test_cpu_bf16_autocast_runs_attention_in_float32(monkeypatch):
    """Under CPU bf16 autocast (training) the attention kernel gets float32 q, k, v (the CPU's float32 kernel is
    the faster and more exact one); the matmuls around it still run in bf16."""
    seen = []
    sdpa = dec.F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append((q.dtype, k.dtype, v.dtype))
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(dec.F, "scaled_dot_product_attention", spy)
    model = random_decoder(tiny_config(), seed=4)
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(tokens)
    assert seen and set(seen) == {(torch.float32,) * 3}
    with torch.no_grad():
        ref = model(tokens)
    assert out.dtype == torch.float32 and not torch.equal(out, ref)  # the linear layers did run in bf16
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.05 * float(ref.abs().max()))
    seen.clear()
    with torch.no_grad():
        model(tokens)  # without autocast nothing changes: float32 weights, float32 attention
    assert set(seen) == {(torch.float32,) * 3}
    seen.clear()
    model.setup_caches(2, 16, dtype=torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(tokens, input_pos=torch.arange(9))  # a cached call attends in the cache's dtype
    assert set(seen) == {(torch.bfloat16,) * 3}
