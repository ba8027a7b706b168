"""The t2i backbone: LlamaGen's state-dict names and sizes, cached == uncached, batched == alone with
left-padded captions, LlamaGen's mask rule, the left-pad helper and the explicit caption-drop flag."""

from __future__ import annotations

import pytest
import torch

from aromni.errors import InputError
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone, attention_mask, left_pad_captions
from aromni.omnivivo.t2i_rope import rope_1d, row_tables

CFG = T2IConfig.preset("toy")
L = CFG.cls_token_num


def _model(seed: int = 0) -> T2IBackbone:
    torch.manual_seed(seed)
    model = T2IBackbone(CFG).eval()
    model.init_weights(zero_output=False)  # LlamaGen zero-inits the head; a zero head would hide every bug
    return model


def _captions(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded random captions with the given valid lengths: feats [B, L, C], mask [B, L]."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lengths), L, CFG.caption_dim, generator=g)
    mask = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]  # right-padded
    return left_pad_captions(feats * mask[..., None], mask)


def test_param_counts_from_meta_tensors():
    with torch.device("meta"):
        xl = T2IBackbone(T2IConfig.preset("GPT-XL"))
    assert sum(p.numel() for p in xl.parameters()) == 777_678_080  # omnivivo.md §1.1 [run]
    assert xl.cls_embedding.uncond_embedding.numel() == 245_760  # a buffer, not a parameter
    assert sum(p.numel() for p in xl.layers[0].parameters()) == 20_318_720
    assert sum(p.numel() for p in _model().parameters()) == 1_139_840  # the toy analogue, §4.1


def test_state_dict_has_exactly_llamagen_names_and_shapes():
    with torch.device("meta"):
        sd = T2IBackbone(T2IConfig.preset("GPT-XL")).state_dict()
    assert len(sd) == 258  # omnivivo.md §1.7; no RoPE table, no caches
    expected = {
        "cls_embedding.uncond_embedding": (120, 2048), "cls_embedding.cap_proj.fc1.weight": (1280, 2048),
        "cls_embedding.cap_proj.fc2.weight": (1280, 1280), "tok_embeddings.weight": (16384, 1280),
        "norm.weight": (1280,), "output.weight": (16384, 1280)}
    for i in (0, 35):
        expected |= {f"layers.{i}.attention.wqkv.weight": (3840, 1280), f"layers.{i}.attention.wo.weight": (1280, 1280),
                     f"layers.{i}.feed_forward.w1.weight": (3584, 1280), f"layers.{i}.feed_forward.w3.weight": (3584, 1280),
                     f"layers.{i}.feed_forward.w2.weight": (1280, 3584), f"layers.{i}.attention_norm.weight": (1280,),
                     f"layers.{i}.ffn_norm.weight": (1280,)}
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    model = _model()
    model.setup_caches(2)
    model.rope_table()
    assert set(model.state_dict()) == set(_model().state_dict())  # caches and RoPE stay out of the state dict


def test_uncond_embedding_init_scale():
    u = T2IBackbone(T2IConfig.preset("toy", caption_dim=4096, cls_token_num=64)).cls_embedding.uncond_embedding
    assert abs(u.std().item() - 4096 ** -0.5) < 0.1 * 4096 ** -0.5  # randn / sqrt(caption_dim)


def test_mask_rule_matches_llamagens_procedure():
    S, Lc = 6, 3
    caption_mask = torch.tensor([[0, 1, 1], [0, 0, 1]], dtype=torch.bool)
    # LlamaGen: tril, prefix columns times the caption mask, then mask * (1 - eye) + eye.
    ref = torch.tril(torch.ones(S, S)).repeat(2, 1, 1)
    ref[:, :, :Lc] = ref[:, :, :Lc] * caption_mask[:, None, :].float()
    eye = torch.eye(S)
    ref = (ref * (1 - eye) + eye).bool()
    key_valid = torch.cat([caption_mask, torch.ones(2, S - Lc, dtype=torch.bool)], dim=1)
    got = attention_mask(torch.arange(S), key_valid)
    assert got.shape == (2, 1, S, S) and torch.equal(got[:, 0], ref)
    assert got[1, 0, 0, 0] and got[1, 0, 1, 1] and not got[1, 0, 1, 0]  # pad rows see themselves, only
    assert not got[0, 0, 5, 0] and got[0, 0, 5, 1]  # later queries skip pad columns
    # Decode rows (one query at slot 4 of a 6-slot cache) are the same rows of the same matrix.
    assert torch.equal(attention_mask(torch.tensor([4]), key_valid)[:, 0, 0], ref[:, 4])


def test_caption_padding_is_masked_out_and_pad_rows_stay_finite():
    model = _model()
    feats, mask = _captions([5, 11])
    codes = torch.randint(0, CFG.vocab_size, (2, 12))
    with torch.no_grad():
        base = model(feats, codes, mask)
        hidden = model.forward_embeddings(model.caption_embeddings(feats), caption_mask=mask, return_hidden=True)
        assert torch.isfinite(hidden).all()  # pad queries attend to themselves: no NaN softmax
        noisy = feats.clone()
        noisy[~mask] = torch.randn(int((~mask).sum()), CFG.caption_dim)  # change only the masked-out rows
        torch.testing.assert_close(model(noisy, codes, mask), base, rtol=0, atol=1e-6)
        changed = feats.clone()
        changed[0, -1] += 1.0  # a valid caption token
        assert (model(changed, codes, mask)[0] - base[0]).abs().max() > 1e-4


def test_left_pad_helper_rotates_valid_rows_to_the_end():
    feats = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1) + 1
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    out, out_mask = left_pad_captions(feats, mask, length=5)
    assert torch.equal(out[..., 0], torch.tensor([[0, 0, 0, 1, 2], [0, 0, 5, 6, 7]], dtype=torch.float32))
    assert torch.equal(out_mask, torch.tensor([[0, 0, 0, 1, 1], [0, 0, 1, 1, 1]], dtype=torch.bool))
    with pytest.raises(InputError, match="not right-padded"):
        left_pad_captions(feats, torch.tensor([[0, 1, 1, 0], [1, 1, 1, 0]]))
    with pytest.raises(InputError, match="longer than"):
        left_pad_captions(feats, mask, length=3)


def test_cached_prefill_and_decode_equal_the_full_forward():
    model = _model()
    feats, mask = _captions([4, 16])
    codes = torch.randint(0, CFG.vocab_size, (2, CFG.block_size))
    with torch.no_grad():
        full = model(feats, codes, mask)  # [B, 64, V]; row t predicts codes[:, t]
        model.setup_caches(2)
        pre = model.forward_embeddings(model.caption_embeddings(feats), torch.arange(L), caption_mask=mask)
        torch.testing.assert_close(pre[:, -1], full[:, 0], rtol=0, atol=1e-5)
        # A multi-token chunk at a non-zero offset, then one-token steps.
        chunk = model.forward_embeddings(model.tok_embeddings(codes[:, :10]), torch.arange(L, L + 10))
        torch.testing.assert_close(chunk, full[:, 1:11], rtol=0, atol=1e-5)
        for t in range(11, CFG.block_size):
            step = model.forward_embeddings(model.tok_embeddings(codes[:, t - 1:t]), torch.tensor([L + t - 1]))
            assert step.dtype == torch.float32
            torch.testing.assert_close(step[:, 0], full[:, t], rtol=0, atol=1e-5)
        # reset_caches forgets the caption mask: a new prefill without padding differs from the padded one.
        model.reset_caches()
        again = model.forward_embeddings(model.caption_embeddings(feats), torch.arange(L), logits_to_keep=1)
        assert (again[0, -1] - full[0, 0]).abs().max() > 1e-4


def test_grouped_kv_heads_cached_equals_full():
    torch.manual_seed(0)
    model = T2IBackbone(CFG.replace(n_kv_head=2)).eval()
    model.init_weights(zero_output=False)
    assert model.layers[0].attention.wqkv.weight.shape == ((4 + 2 * 2) * 32, 128)
    feats, mask = _captions([7])
    codes = torch.randint(0, CFG.vocab_size, (1, 6))
    with torch.no_grad():
        full = model(feats, codes, mask)
        model.setup_caches(1)
        model.forward_embeddings(model.caption_embeddings(feats), torch.arange(L), caption_mask=mask)
        for t in range(1, 6):
            step = model.forward_embeddings(model.tok_embeddings(codes[:, t - 1:t]), torch.tensor([L + t - 1]))
            torch.testing.assert_close(step[:, 0], full[:, t], rtol=0, atol=1e-5)


def test_batched_equals_alone_with_captions_of_different_lengths():
    model = _model()
    feats, mask = _captions([3, 16, 9])
    codes = torch.randint(0, CFG.vocab_size, (3, 20))
    with torch.no_grad():
        batch = model(feats, codes, mask)
        for b in range(3):
            alone = model(feats[b:b + 1], codes[b:b + 1], mask[b:b + 1])
            torch.testing.assert_close(batch[b:b + 1], alone, rtol=0, atol=1e-5)


def test_per_row_rope_tables():
    model = _model()
    feats, mask = _captions([6, 10])
    codes = torch.randint(0, CFG.vocab_size, (2, 8))
    own = model.rope_table()
    other = rope_1d(CFG.block_size, CFG.head_dim, CFG.rope_base, L, zero_prefix=False)
    with torch.no_grad():
        shared = model(feats, codes, mask)
        torch.testing.assert_close(model(feats, codes, mask, rope=row_tables([own, own])), shared, rtol=0, atol=0)
        mixed = model(feats, codes, mask, rope=row_tables([own, other]))
        torch.testing.assert_close(mixed[0], shared[0], rtol=0, atol=1e-6)  # row 0 untouched by row 1's table
        torch.testing.assert_close(mixed[1:], model(feats[1:], codes[1:], mask[1:], rope=other), rtol=0, atol=1e-5)
        assert (mixed[1] - shared[1]).abs().max() > 1e-4


def test_caption_drop_follows_the_train_flag_not_the_module_mode():
    model = T2IBackbone(CFG.replace(class_dropout_prob=0.5))
    feats = torch.randn(64, L, CFG.caption_dim)
    null = model.cls_embedding.cap_proj(model.null_captions(64))
    with torch.no_grad():
        model.train()  # train mode alone never drops captions (OmniVIVO keeps the frozen backbone's flag off)
        assert torch.equal(model.caption_embeddings(feats), model.cls_embedding.cap_proj(feats))
        model.eval()  # the explicit flag drops whole captions even in eval mode
        out = model.caption_embeddings(feats, train=True, generator=torch.Generator().manual_seed(0))
        dropped = (out - null).abs().amax(dim=(1, 2)) < 1e-6
        kept = (out - model.cls_embedding.cap_proj(feats)).abs().amax(dim=(1, 2)) < 1e-6
        assert torch.equal(dropped, ~kept) and 10 < int(dropped.sum()) < 54


def test_low_precision_keeps_float32_rope_and_logits_and_training_follows_generation():
    model = _model()
    feats, mask = _captions([6, 16])
    codes = torch.randint(0, CFG.vocab_size, (2, 10))
    with torch.inference_mode():  # the RoPE table is first built here, as generate_images would
        ref = model(feats, codes, mask)
    loss = model(feats, codes, mask).logsumexp(-1).mean()  # ... and must still serve a backward pass
    loss.backward()
    assert model.layers[0].attention.wqkv.weight.grad is not None
    model.to(torch.bfloat16)
    assert model.rope_table().dtype == torch.float32
    with torch.no_grad():
        low = model(feats, codes, mask)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref, rtol=0.1, atol=0.15)


def test_bad_inputs_raise_input_errors():
    model = _model()
    feats, _ = _captions([4])
    with pytest.raises(InputError, match="caption features of shape"):
        model(feats[:, :-1], torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(InputError, match="image code outside"):
        model(feats, torch.full((1, 3), CFG.vocab_size))
    with pytest.raises(InputError, match="image codes per row"):
        model(feats, torch.zeros(1, CFG.block_size + 1, dtype=torch.long))
    with pytest.raises(InputError, match="no KV cache"):
        model.forward_embeddings(model.caption_embeddings(feats), torch.arange(L))
    model.setup_caches(2)
    with pytest.raises(InputError, match="cache holds 2"):
        model.forward_embeddings(model.caption_embeddings(feats), torch.arange(L))
