"""Meta-native and Anole/AR-Omni HF layouts: hand-written files in the exact key layout of the reference spec §D
load to the same weights as the upstream-HF load, agree with an independent native float64 forward, our savers
write exactly those files, and every external layout round-trips load -> save -> load bit-exactly."""

from __future__ import annotations

import json

import pytest
import torch
from chameleon_refs import (
    TINY_VQ,
    hf_anole_state_from_meta,
    hf_logits,
    hf_model,
    meta_params,
    meta_state_from_hf,
    native_logits,
    random_decoder,
    split_meta,
    tiny_config,
    unpermute_norm,
)
from safetensors.torch import load_file, save_file

from aromni.errors import CheckpointError
from aromni.models import detect_format, load_decoder, save_checkpoint
from aromni.models.checkpoint.hf_format import hf_extras

pytest.importorskip("transformers")
TOL = 1e-5


def _tokens(cfg, B=2, T=12, seed=3):
    return torch.randint(0, cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


def _write_meta(path, shards, params, consolidate=None):
    path.mkdir(parents=True, exist_ok=True)
    if len(shards) == 1:
        torch.save(shards[0], path / "consolidated.pth")
    else:
        for i, s in enumerate(shards):
            torch.save(s, path / f"consolidated.{i:02d}.pth")
    (path / "params.json").write_text(json.dumps(params))
    if consolidate is not None:
        (path / "consolidate_params.json").write_text(json.dumps(consolidate))
    return path


def _anole_config(cfg, **kw):
    return {"architectures": ["ChameleonForCausalLM"], "model_type": "chameleon", "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.dim, "intermediate_size": cfg.ffn_dim, "num_hidden_layers": cfg.n_layers,
            "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads, "hidden_act": "silu",
            "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta,
            "rope_scaling": None, "qk_layernorm": cfg.qk_norm, "swin_norm": cfg.swin_norm, "model_parallel_size": 1,
            "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False, "bos_token_id": 1,
            "vocabulary_map": {"<image>": 5}, "vq_config": TINY_VQ, "transformers_version": "4.42.0.dev0", **kw}


def _write_anole(path, state, cfg, **config):
    path.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(_anole_config(cfg, **config)))
    return path


@pytest.fixture(params=[(False, 2), (True, 4)], ids=["prenorm-gqa", "swin-mha"])
def hf_source(request, tmp_path):
    """An upstream-HF checkpoint written by transformers, with QK-norm shared by heads (as Meta stores it)."""
    swin, kv = request.param
    cfg = tiny_config(swin_norm=swin, n_kv_heads=kv)
    ref = hf_model(cfg, seed=21, shared_qk_norm=True)
    ref.save_pretrained(tmp_path / "hfu")
    return cfg, ref, tmp_path


def test_meta_and_anole_files_equal_upstream_hf_load(hf_source):
    cfg, ref, tmp = hf_source
    sd = load_file(str(tmp / "hfu" / "model.safetensors"))
    meta = meta_state_from_hf(sd, cfg)
    _write_meta(tmp / "meta", [meta], meta_params(cfg), {"model_parallel_size": 1})
    _write_anole(tmp / "anole", hf_anole_state_from_meta(meta, cfg), cfg)
    assert [detect_format(tmp / d) for d in ("hfu", "meta", "anole")] == ["hf", "meta", "hf-anole"]

    base = load_decoder(tmp / "hfu")
    tokens = _tokens(cfg)
    with torch.no_grad():
        expected = base(tokens)
        for d in ("meta", "anole"):
            other = load_decoder(tmp / d)
            # multiple_of is bookkeeping once ffn_dim is known; a Meta params.json carries no max_seq_len.
            assert other.cfg.replace(multiple_of=256, max_seq_len=64) == base.cfg.replace(multiple_of=256), d
            for k, v in base.state_dict().items():
                assert torch.equal(v, other.state_dict()[k]), (d, k)
            assert torch.equal(other(tokens), expected), d
        # Independent checks: the original (interleaved-RoPE) forward on the Meta tensors, and transformers.
        native = native_logits([meta], meta_params(cfg)["model"], tokens)
        assert (expected.double() - native).abs().max().item() <= TOL
        assert (hf_logits(ref, tokens).double() - native).abs().max().item() <= TOL


def test_our_savers_write_the_reference_layouts(hf_source):
    cfg, _, tmp = hf_source
    sd = load_file(str(tmp / "hfu" / "model.safetensors"))
    meta = meta_state_from_hf(sd, cfg)
    decoder = load_decoder(tmp / "hfu")
    save_checkpoint(decoder, tmp / "meta_out", "meta")
    save_checkpoint(decoder, tmp / "anole_out", "hf-anole")
    written = torch.load(tmp / "meta_out" / "consolidated.pth", weights_only=True)
    assert set(written) == set(meta)
    for k, v in meta.items():
        assert torch.equal(written[k], v), k
    params = json.loads((tmp / "meta_out" / "params.json").read_text())["model"]
    assert params["dim"] == cfg.dim and params["qk_normalization"] is True and params["swin_norm"] == cfg.swin_norm
    anole = hf_anole_state_from_meta(meta, cfg)
    written = load_file(str(tmp / "anole_out" / "model.safetensors"))
    assert set(written) == set(anole)
    for k, v in anole.items():
        assert torch.equal(written[k], v), k
    config = json.loads((tmp / "anole_out" / "config.json").read_text())
    assert config["qk_layernorm"] is True and config["architectures"] == ["ChameleonForCausalLM"]


def _sharded_meta(cfg, seed=0, dtype=torch.float32):
    """Two model-parallel shards with a different QK-norm vector per shard (as the 30B release has)."""
    dec = random_decoder(cfg, seed=seed, shared_qk_norm=True)
    from aromni.models.checkpoint.layouts import ours_to_hf

    hf_sd = {k: v.clone() for k, v in ours_to_hf(dec.state_dict(), cfg, interleaved=False)}
    full = meta_state_from_hf(hf_sd, cfg)
    shards = split_meta(full, 2)
    g = torch.Generator().manual_seed(seed + 100)
    for i in range(cfg.n_layers):
        for n in ("q", "k"):
            for a in ("weight", "bias"):
                key = f"layers.{i}.attention.{n}_normalization.{a}"
                for s in shards:
                    s[key] = torch.randn(cfg.head_dim, generator=g) * 0.3 + (1.0 if a == "weight" else 0.0)
    return [{k: v if k == "rope.freqs" else v.to(dtype) for k, v in s.items()} for s in shards]


@pytest.mark.parametrize("swin_norm", [False, True])
def test_model_parallel_meta_shards(tmp_path, swin_norm):
    from transformers import ChameleonForConditionalGeneration

    cfg = tiny_config(swin_norm=swin_norm)
    shards = _sharded_meta(cfg, seed=4)
    _write_meta(tmp_path / "mp", shards, meta_params(cfg), {"model_parallel_size": 2})
    decoder = load_decoder(tmp_path / "mp")
    tokens = _tokens(cfg)
    with torch.no_grad():
        ours = decoder(tokens)
    native = native_logits(shards, meta_params(cfg)["model"], tokens)
    assert (ours.double() - native).abs().max().item() <= TOL
    # Each shard's vector governs its own heads: heads 0-1 use shard 0's, heads 2-3 shard 1's.
    qn, key = decoder.layers[0].attn.q_norm.weight, "layers.0.attention.q_normalization.weight"
    assert torch.equal(unpermute_norm(qn[0]), shards[0][key]) and torch.equal(qn[0], qn[1])
    assert torch.equal(unpermute_norm(qn[2]), shards[1][key]) and torch.equal(qn[2], qn[3])
    # Per-head norms survive in the upstream HF layout, and transformers agrees.
    save_checkpoint(decoder, tmp_path / "hf", "hf")
    theirs = ChameleonForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    assert (hf_logits(theirs, tokens).double() - native).abs().max().item() <= TOL
    # ...but not in the Anole layout (one vector for all heads): refused, not silently averaged.
    with pytest.raises(CheckpointError, match="differ between heads"):
        save_checkpoint(decoder, tmp_path / "anole", "hf-anole")
    with pytest.raises(CheckpointError, match="differ between heads"):
        save_checkpoint(decoder, tmp_path / "meta1", "meta", num_shards=1)


def test_release_root_layout_and_rope_freqs_none(tmp_path):
    """The AR-Omni/Anole release root (models/7b + tokenizer/) and Anole's bin_to_pth ``rope.freqs: None``."""
    cfg = tiny_config()
    dec = random_decoder(cfg, seed=8, shared_qk_norm=True)
    save_checkpoint(dec, tmp_path / "models" / "7b", "meta")
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "text_tokenizer.json").write_text("{}")
    state = torch.load(tmp_path / "models" / "7b" / "consolidated.pth", weights_only=True)
    state["rope.freqs"] = None
    torch.save(state, tmp_path / "models" / "7b" / "consolidated.pth")
    assert detect_format(tmp_path) == "meta"
    again = load_decoder(tmp_path)
    for k, v in dec.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_qk_norm_off(tmp_path):
    cfg = tiny_config(qk_norm=False)
    dec = random_decoder(cfg, seed=9)
    tokens = _tokens(cfg)
    with torch.no_grad():
        expected = dec(tokens)
    for fmt in ("meta", "hf-anole", "aromni"):
        save_checkpoint(dec, tmp_path / fmt, fmt)
        assert detect_format(tmp_path / fmt) == fmt
        with torch.no_grad():
            assert torch.equal(load_decoder(tmp_path / fmt)(tokens), expected), fmt
    shards = [torch.load(tmp_path / "meta" / "consolidated.pth", weights_only=True)]
    assert not any("normalization" in k for k in shards[0])
    assert (expected.double() - native_logits(shards, meta_params(cfg)["model"], tokens)).abs().max() <= TOL
    with pytest.raises(CheckpointError, match="QK-norm"):
        save_checkpoint(dec, tmp_path / "hf", "hf")


# ---------------------------------------------------------------------------------------------- round trips
def _assert_same_tensors(a: dict, b: dict):
    assert set(a) == set(b), set(a) ^ set(b)
    for k in a:
        if a[k] is None:
            assert b[k] is None, k
            continue
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_upstream_hf_round_trip_is_bit_exact(tmp_path):
    cfg = tiny_config()
    hf_model(cfg, seed=31).save_pretrained(tmp_path / "src")  # includes model.vqmodel.* and a vocabulary_map
    decoder = load_decoder(tmp_path / "src")
    extra_config, extra_tensors = hf_extras(tmp_path / "src")
    save_checkpoint(decoder, tmp_path / "out", "hf", extra_config=extra_config, extra_tensors=extra_tensors)
    _assert_same_tensors(load_file(str(tmp_path / "src" / "model.safetensors")),
                         load_file(str(tmp_path / "out" / "model.safetensors")))
    src_cfg = json.loads((tmp_path / "src" / "config.json").read_text())
    out_cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert out_cfg["vocabulary_map"] == src_cfg["vocabulary_map"] and out_cfg["vq_config"]["embed_dim"] == 8
    again = load_decoder(tmp_path / "out")
    for k, v in decoder.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_anole_hf_round_trip_is_bit_exact(tmp_path, dtype):
    cfg = tiny_config(swin_norm=True)
    dec = random_decoder(cfg, seed=12, shared_qk_norm=True)
    from aromni.models.checkpoint.layouts import ours_to_hf

    hf_sd = {k: v.clone() for k, v in ours_to_hf(dec.state_dict(), cfg, interleaved=False)}
    anole = {k: v.to(dtype) for k, v in hf_anole_state_from_meta(meta_state_from_hf(hf_sd, cfg), cfg).items()}
    _write_anole(tmp_path / "src", anole, cfg)
    decoder = load_decoder(tmp_path / "src")
    assert decoder.embed.weight.dtype == dtype
    save_checkpoint(decoder, tmp_path / "out", "hf-anole")
    _assert_same_tensors(anole, load_file(str(tmp_path / "out" / "model.safetensors")))


@pytest.mark.parametrize("num_shards,dtype", [(1, torch.bfloat16), (2, torch.float32), (2, torch.bfloat16)])
def test_meta_round_trip_is_bit_exact(tmp_path, num_shards, dtype):
    cfg = tiny_config()
    if num_shards == 1:
        dec = random_decoder(cfg, seed=13, shared_qk_norm=True)
        from aromni.models.checkpoint.layouts import ours_to_hf

        hf_sd = {k: v.clone() for k, v in ours_to_hf(dec.state_dict(), cfg, interleaved=False)}
        shards = [{k: v if k == "rope.freqs" else v.to(dtype) for k, v in meta_state_from_hf(hf_sd, cfg).items()}]
    else:
        shards = _sharded_meta(cfg, seed=14, dtype=dtype)
    _write_meta(tmp_path / "src", shards, meta_params(cfg), {"model_parallel_size": num_shards})
    decoder = load_decoder(tmp_path / "src")
    save_checkpoint(decoder, tmp_path / "out", "meta", num_shards=num_shards)
    names = ["consolidated.pth"] if num_shards == 1 else [f"consolidated.{i:02d}.pth" for i in range(num_shards)]
    for name, src in zip(names, shards):
        _assert_same_tensors(src, torch.load(tmp_path / "out" / name, weights_only=True))
    again = load_decoder(tmp_path / "out")
    for k, v in decoder.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
