"""A released-layout ``flow.pt`` loads into :class:`Token2Mel` with every key, strictly.

The key list below is written from CosyVoice's own module structure (FunAudioLLM/CosyVoice at ace7c47 and
Matcha-TTS), NOT from our model, so a renamed or missing module on our side fails the test:

- ``cosyvoice/flow/flow.py CausalMaskedDiffWithXvec.__init__``: ``input_embedding`` Embedding(vocab, 512),
  ``spk_embed_affine_layer`` Linear(192, 80), ``encoder``, ``encoder_proj`` Linear(512, 80), ``decoder``.
- ``cosyvoice/transformer/upsample_encoder.py UpsampleConformerEncoder``: ``embed`` / ``up_embed`` =
  ``LinearNoSubsampling`` (``subsampling.py``: ``out`` = Sequential(Linear, LayerNorm, Dropout); its
  ``EspnetRelPositionalEncoding`` keeps ``pe`` as a plain attribute, not state), ``pre_lookahead_layer``
  (``conv1`` kernel 4, ``conv2`` kernel 3), ``encoders`` x num_blocks, ``up_layer.conv`` (kernel 5),
  ``up_encoders`` x 4 (hard-coded), ``after_norm``.
- ``cosyvoice/transformer/encoder_layer.py ConformerEncoderLayer`` with ``macaron_style: False`` and
  ``use_cnn_module: False``: ``self_attn``, ``feed_forward``, ``norm_ff``, ``norm_mha`` only;
  ``attention.py RelPositionMultiHeadedAttention``: ``linear_{q,k,v,out}`` (bias), ``linear_pos`` (no bias),
  ``pos_bias_u``, ``pos_bias_v`` [heads, d_k]; ``positionwise_feed_forward.py``: ``w_1``, ``w_2``.
- ``cosyvoice/flow/flow_matching.py CausalConditionalCFM``: only ``estimator`` (``rand_noise`` is an attribute).
- ``cosyvoice/flow/decoder.py CausalConditionalDecoder`` with ``channels: [256]``: ``time_mlp`` (Matcha's
  ``TimestepEmbedding``: ``linear_1``, ``linear_2``), ``down_blocks.0 = [CausalResnetBlock1D, [BasicTransformerBlock
  x n_blocks], CausalConv1d]``, ``mid_blocks.i = [resnet, blocks]``, ``up_blocks.0 = [resnet(2c -> c), blocks,
  CausalConv1d]``, ``final_block`` (``CausalBlock1D``: ``block`` = [CausalConv1d, Transpose, LayerNorm, Transpose,
  Mish]), ``final_proj`` Conv1d(c, 80, 1). Matcha's ``ResnetBlock1D``: ``mlp`` = [Mish, Linear], ``block1``,
  ``block2``, ``res_conv``; ``BasicTransformerBlock`` (``matcha/models/components/transformer.py``): ``norm1``,
  ``attn1`` (diffusers ``Attention``, ``bias=False``: ``to_q``, ``to_k``, ``to_v``, ``to_out.0``), ``norm3``,
  ``ff.net`` = [diffusers ``GELU`` (``proj``), Dropout, Linear].
"""

from __future__ import annotations

import pytest
import torch

from aromni.cosyvoice.flow import FlowConfig, Token2Mel, load_official_flow
from aromni.errors import CheckpointError

# Scaled-down sizes (the release: d 512, 8 heads, FFN 2048, vocab 6561, estimator 256 channels, 8 x 64 heads).
D, HEADS, FFN, VOCAB, CH, E_HEADS, E_HEAD_DIM = 16, 2, 24, 30, 16, 2, 8
N_BLOCKS, N_UP, N_TR, N_MID = 6, 4, 4, 12  # the release's block counts
OVERRIDES = {"vocab_size": VOCAB,
             "encoder": {"d_model": D, "heads": HEADS, "linear_units": FFN},
             "estimator": {"channels": CH, "num_heads": E_HEADS, "attention_head_dim": E_HEAD_DIM}}


def _linear(prefix: str, out: int, inp: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (out, inp)} | ({f"{prefix}.bias": (out,)} if bias else {})


def _conv(prefix: str, out: int, inp: int, k: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (out, inp, k), f"{prefix}.bias": (out,)}


def _norm(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,)}


def _conformer(p: str) -> dict[str, tuple[int, ...]]:
    s = {}
    for name in ("linear_q", "linear_k", "linear_v", "linear_out"):
        s |= _linear(f"{p}.self_attn.{name}", D, D)
    s |= _linear(f"{p}.self_attn.linear_pos", D, D, bias=False)
    s |= {f"{p}.self_attn.pos_bias_u": (HEADS, D // HEADS), f"{p}.self_attn.pos_bias_v": (HEADS, D // HEADS)}
    s |= _linear(f"{p}.feed_forward.w_1", FFN, D) | _linear(f"{p}.feed_forward.w_2", D, FFN)
    return s | _norm(f"{p}.norm_ff", D) | _norm(f"{p}.norm_mha", D)


def _resnet(p: str, inp: int) -> dict[str, tuple[int, ...]]:
    return (_linear(f"{p}.mlp.1", CH, 4 * CH) | _conv(f"{p}.block1.block.0", CH, inp, 3)
            | _norm(f"{p}.block1.block.2", CH) | _conv(f"{p}.block2.block.0", CH, CH, 3)
            | _norm(f"{p}.block2.block.2", CH) | _conv(f"{p}.res_conv", CH, inp, 1))


def _transformer(p: str) -> dict[str, tuple[int, ...]]:
    inner = E_HEADS * E_HEAD_DIM
    s = _norm(f"{p}.norm1", CH) | _norm(f"{p}.norm3", CH)
    for name in ("to_q", "to_k", "to_v"):
        s |= _linear(f"{p}.attn1.{name}", inner, CH, bias=False)
    s |= _linear(f"{p}.attn1.to_out.0", CH, inner)
    return s | _linear(f"{p}.ff.net.0.proj", 4 * CH, CH) | _linear(f"{p}.ff.net.2", CH, 4 * CH)


def official_flow_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of a (scaled-down) CosyVoice2 ``flow.pt`` with its shape, from the official module tree."""
    s = {"input_embedding.weight": (VOCAB, D)} | _linear("spk_embed_affine_layer", 80, 192)
    s |= _linear("encoder_proj", 80, D)
    e = "encoder"
    for emb in ("embed", "up_embed"):
        s |= _linear(f"{e}.{emb}.out.0", D, D) | _norm(f"{e}.{emb}.out.1", D)
    s |= _conv(f"{e}.pre_lookahead_layer.conv1", D, D, 4) | _conv(f"{e}.pre_lookahead_layer.conv2", D, D, 3)
    for i in range(N_BLOCKS):
        s |= _conformer(f"{e}.encoders.{i}")
    s |= _conv(f"{e}.up_layer.conv", D, D, 5)
    for i in range(N_UP):
        s |= _conformer(f"{e}.up_encoders.{i}")
    s |= _norm(f"{e}.after_norm", D)
    est = "decoder.estimator"
    s |= _linear(f"{est}.time_mlp.linear_1", 4 * CH, 320) | _linear(f"{est}.time_mlp.linear_2", 4 * CH, 4 * CH)
    s |= _resnet(f"{est}.down_blocks.0.0", 320) | _conv(f"{est}.down_blocks.0.2", CH, CH, 3)
    for j in range(N_TR):
        s |= _transformer(f"{est}.down_blocks.0.1.{j}") | _transformer(f"{est}.up_blocks.0.1.{j}")
    for i in range(N_MID):
        s |= _resnet(f"{est}.mid_blocks.{i}.0", CH)
        for j in range(N_TR):
            s |= _transformer(f"{est}.mid_blocks.{i}.1.{j}")
    s |= _resnet(f"{est}.up_blocks.0.0", 2 * CH) | _conv(f"{est}.up_blocks.0.2", CH, CH, 3)
    s |= _conv(f"{est}.final_block.block.0", CH, CH, 3) | _norm(f"{est}.final_block.block.2", CH)
    return s | _conv(f"{est}.final_proj", 80, CH, 1)


def write_flow_pt(path, drop: str | None = None, extra: str | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=g) * 0.05 for k, shape in official_flow_shapes().items()}
    if drop:
        del state[drop]
    if extra:
        state[extra] = torch.zeros(1)
    torch.save(state, path)
    return state


def test_tiny_official_flow_loads_every_key(tmp_path):
    state = write_flow_pt(tmp_path / "flow.pt")
    assert len(state) > 500  # the full module tree: 6 + 4 conformer blocks, 12 mid blocks of 4 transformers
    model = load_official_flow(tmp_path / "flow.pt", **OVERRIDES)
    own = model.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k
    mel = model.inference(torch.randint(0, VOCAB, (1, 6)), n_timesteps=2)
    assert mel.shape == (1, 80, 12) and torch.isfinite(mel).all()


def test_cosyvoice2_preset_has_the_release_sizes():
    model = Token2Mel(FlowConfig.preset("cosyvoice2"))
    sd = model.state_dict()
    assert sd["input_embedding.weight"].shape == (6561, 512)
    assert sd["decoder.estimator.time_mlp.linear_1.weight"].shape == (1024, 320)
    assert sd["decoder.estimator.down_blocks.0.1.3.attn1.to_q.weight"].shape == (512, 256)
    assert "decoder.estimator.mid_blocks.11.1.3.ff.net.2.weight" in sd
    assert sd["encoder.up_encoders.3.self_attn.pos_bias_u"].shape == (8, 64)


@pytest.mark.parametrize("drop, extra, word", [
    ("encoder.up_layer.conv.weight", None, "missing keys [encoder.up_layer.conv.weight]"),
    (None, "encoder.global_cmvn.mean", "unexpected keys [encoder.global_cmvn.mean]"),
])
def test_mismatched_keys_are_one_line_errors(tmp_path, drop, extra, word):
    write_flow_pt(tmp_path / "flow.pt", drop=drop, extra=extra)
    with pytest.raises(CheckpointError) as e:
        load_official_flow(tmp_path / "flow.pt", **OVERRIDES)
    assert word in str(e.value) and "\n" not in str(e.value)


class Evil:
    pass


def test_wrong_shapes_missing_file_and_pickled_objects(tmp_path):
    write_flow_pt(tmp_path / "flow.pt")
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_official_flow(tmp_path / "flow.pt", **{**OVERRIDES, "vocab_size": VOCAB + 1})
    with pytest.raises(CheckpointError, match="missing"):
        load_official_flow(tmp_path / "nope.pt")
    torch.save({"x": Evil()}, tmp_path / "evil.pt")  # an arbitrary Python object: refused by weights_only
    with pytest.raises(CheckpointError, match="arbitrary"):
        load_official_flow(tmp_path / "evil.pt", **OVERRIDES)
