"""Parity with transformers' Chameleon: its own save_pretrained files load through our loader, and our HF writer
produces files transformers loads, with fp32 logits equal to <= 1e-5."""

from __future__ import annotations

import pytest
import torch
from chameleon_refs import hf_logits, hf_model, random_decoder, tiny_config

from aromni.models import detect_format, load_decoder, save_checkpoint

transformers = pytest.importorskip("transformers")

TOL = 1e-5


def _tokens(cfg, B=2, T=13, seed=1):
    return torch.randint(0, cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("swin_norm", [False, True])
@pytest.mark.parametrize("kv_heads", [2, 4])
def test_transformers_save_pretrained_loads_with_equal_logits(tmp_path, swin_norm, kv_heads):
    cfg = tiny_config(swin_norm=swin_norm, n_kv_heads=kv_heads)
    ref = hf_model(cfg, seed=3)  # random per-head QK-norm weights: exercises the [H, D] layout fully
    ref.save_pretrained(tmp_path)
    assert detect_format(tmp_path) == "hf"
    ours = load_decoder(tmp_path)
    assert ours.cfg.swin_norm == swin_norm and ours.cfg.n_kv_heads == kv_heads
    tokens = _tokens(cfg)
    with torch.no_grad():
        diff = (ours(tokens) - hf_logits(ref, tokens)).abs().max().item()
    assert diff <= TOL, diff


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_our_hf_writer_loads_in_transformers(tmp_path, attn):
    from transformers import ChameleonForConditionalGeneration

    cfg = tiny_config(swin_norm=True)
    ours = random_decoder(cfg, seed=5)
    save_checkpoint(ours, tmp_path, "hf", extra_config={"vocabulary_map": {"<image>": 5}})
    theirs = ChameleonForConditionalGeneration.from_pretrained(tmp_path, attn_implementation=attn).eval()
    tokens = _tokens(cfg, B=3, T=17)
    with torch.no_grad():
        diff = (ours(tokens) - hf_logits(theirs, tokens)).abs().max().item()
    assert diff <= TOL, diff


def test_greedy_continuation_matches_transformers_generate(tmp_path):
    """Prefill + cached one-token decode picks the same greedy tokens as transformers' generate()."""
    from transformers import GenerationConfig

    cfg = tiny_config()
    ref = hf_model(cfg, seed=7, vocabulary_map={})  # no IMGIMG names: generate() masks no logits
    ref.save_pretrained(tmp_path)
    ours = load_decoder(tmp_path)
    prompt = _tokens(cfg, B=2, T=9, seed=2)
    n_new = 12
    gc = GenerationConfig(max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, eos_token_id=None,
                          pad_token_id=1, bos_token_id=None)
    expected = ref.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=gc)[:, 9:]
    ours.setup_caches(2, 9 + n_new)
    got = []
    with torch.inference_mode():
        tok = ours(prompt, input_pos=torch.arange(9), logits_to_keep=1)[:, -1].argmax(-1)
        got.append(tok)
        for t in range(9, 9 + n_new - 1):
            tok = ours(tok[:, None], input_pos=torch.tensor([t]))[:, -1].argmax(-1)
            got.append(tok)
    assert torch.equal(torch.stack(got, 1), expected)


def test_sharded_safetensors_with_index(tmp_path):
    cfg = tiny_config()
    ours = random_decoder(cfg, seed=11)
    save_checkpoint(ours, tmp_path, "hf", max_shard_bytes=20_000)
    files = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(files) > 2 and (tmp_path / "model.safetensors.index.json").is_file()
    assert files[0].startswith("model-00001-of-")
    again = load_decoder(tmp_path)
    for k, v in ours.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    from transformers import ChameleonForConditionalGeneration

    theirs = ChameleonForConditionalGeneration.from_pretrained(tmp_path).eval()
    tokens = _tokens(cfg)
    with torch.no_grad():
        assert (ours(tokens) - hf_logits(theirs, tokens)).abs().max().item() <= TOL


def test_dtype_argument_casts_on_load(tmp_path):
    cfg = tiny_config()
    hf_model(cfg, seed=1).save_pretrained(tmp_path)
    bf = load_decoder(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in bf.parameters()} == {torch.bfloat16}
    assert bf(_tokens(cfg)).dtype == torch.float32


def test_pytorch_model_bin_is_read_too(tmp_path):
    """Older HF exports ship ``pytorch_model.bin``; it is read with weights_only=True like any .pth."""
    from safetensors.torch import load_file

    cfg = tiny_config()
    hf_model(cfg, seed=2).save_pretrained(tmp_path / "st")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_bytes((tmp_path / "st" / "config.json").read_bytes())
    torch.save(load_file(str(tmp_path / "st" / "model.safetensors")), tmp_path / "bin" / "pytorch_model.bin")
    assert detect_format(tmp_path / "bin") == "hf"
    a, b = load_decoder(tmp_path / "st"), load_decoder(tmp_path / "bin")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
