"""WavTokenizer: loading checkpoints in the official key layout, parity with a direct computation from the
unfolded (weight-normed) weights, our save/load format, and clear failures on malformed files.

The official layout is written here from the format reference (official-formats.md §A.7), not derived from our
model, so a renamed or missing key on our side fails these tests.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from aromni.errors import CheckpointError, InputError
from aromni.tokenizers.base import load_tokenizer
from aromni.tokenizers.speech.wavtokenizer import WavTokenizer, WavTokenizerConfig
from aromni.tokenizers.speech.wavtokenizer.official import convert_official_state

E = "feature_extractor.encodec.encoder.model."
D = "feature_extractor.encodec.decoder.model."
Q = "feature_extractor.encodec.quantizer.vq.layers.0._codebook."



# --------------------------------------------------------------------------- the official layout, from the spec
def _wn_conv(out: dict, prefix: str, shape: tuple[int, ...], transposed: bool = False) -> None:
    out[prefix + "weight_v"] = shape
    out[prefix + "weight_g"] = (shape[0], 1, 1)
    out[prefix + "bias"] = (shape[1] if transposed else shape[0],)


def _lstm(out: dict, prefix: str, dim: int, layers: int) -> None:
    for layer in range(layers):
        out[f"{prefix}weight_ih_l{layer}"] = (4 * dim, dim)
        out[f"{prefix}weight_hh_l{layer}"] = (4 * dim, dim)
        out[f"{prefix}bias_ih_l{layer}"] = (4 * dim,)
        out[f"{prefix}bias_hh_l{layer}"] = (4 * dim,)


def _resblock(out: dict, prefix: str, ch: int) -> None:
    _wn_conv(out, prefix + "block.1.conv.conv.", (ch // 2, ch, 3))
    _wn_conv(out, prefix + "block.3.conv.conv.", (ch, ch // 2, 1))
    _wn_conv(out, prefix + "shortcut.conv.conv.", (ch, ch, 1))


def official_shapes(cfg: WavTokenizerConfig, decoder_ratios=(8, 5, 4, 2)) -> dict[str, tuple[int, ...]]:
    """Every generator key of an official checkpoint (incl. the unused SEANet decoder) -> shape."""
    s: dict[str, tuple[int, ...]] = {}
    ch = cfg.n_filters
    _wn_conv(s, E + "0.conv.conv.", (ch, 1, 7))
    for i, stride in enumerate(cfg.strides):
        _resblock(s, f"{E}{1 + 3 * i}.", ch)
        _wn_conv(s, f"{E}{3 + 3 * i}.conv.conv.", (2 * ch, ch, 2 * stride))
        ch *= 2
    _lstm(s, f"{E}{1 + 3 * len(cfg.strides)}.lstm.", ch, 2)
    _wn_conv(s, f"{E}{3 + 3 * len(cfg.strides)}.conv.conv.", (cfg.dimension, ch, 7))
    # unused SEANet decoder (ignored on load)
    _wn_conv(s, D + "0.conv.conv.", (ch, cfg.dimension, 7))
    _lstm(s, D + "1.lstm.", ch, 2)
    for i, ratio in enumerate(decoder_ratios):
        _wn_conv(s, f"{D}{3 + 3 * i}.convtr.convtr.", (ch, ch // 2, 2 * ratio), transposed=True)
        ch //= 2
        _resblock(s, f"{D}{4 + 3 * i}.", ch)
    _wn_conv(s, f"{D}{3 + 3 * len(decoder_ratios)}.conv.conv.", (1, ch, 7))
    k, d, c, h = cfg.codebook_size, cfg.dimension, cfg.backbone_dim, cfg.intermediate_dim
    s.update({Q + "inited": (1,), Q + "cluster_size": (k,), Q + "embed": (k, d), Q + "embed_avg": (k, d)})
    s.update({"backbone.embed.weight": (c, d, 7), "backbone.embed.bias": (c,),
              "backbone.norm.scale.weight": (4, c), "backbone.norm.shift.weight": (4, c),
              "backbone.final_layer_norm.weight": (c,), "backbone.final_layer_norm.bias": (c,),
              "backbone.pos_net.5.weight": (c,), "backbone.pos_net.5.bias": (c,)})
    for n in range(cfg.num_layers):
        p = f"backbone.convnext.{n}."
        s.update({p + "gamma": (c,), p + "dwconv.weight": (c, 1, 7), p + "dwconv.bias": (c,),
                  p + "norm.scale.weight": (4, c), p + "norm.shift.weight": (4, c),
                  p + "pwconv1.weight": (h, c), p + "pwconv1.bias": (h,),
                  p + "pwconv2.weight": (c, h), p + "pwconv2.bias": (c,)})
    for n in (0, 1, 3, 4):
        p = f"backbone.pos_net.{n}."
        for norm in ("norm1", "norm2"):
            s.update({f"{p}{norm}.weight": (c,), f"{p}{norm}.bias": (c,)})
        for conv in ("conv1", "conv2"):
            s.update({f"{p}{conv}.weight": (c, c, 3), f"{p}{conv}.bias": (c,)})
    s.update({"backbone.pos_net.2.norm.weight": (c,), "backbone.pos_net.2.norm.bias": (c,)})
    for m in ("q", "k", "v", "proj_out"):
        s.update({f"backbone.pos_net.2.{m}.weight": (c, c, 1), f"backbone.pos_net.2.{m}.bias": (c,)})
    s.update({"head.out.weight": (cfg.n_fft + 2, c), "head.out.bias": (cfg.n_fft + 2,),
              "head.istft.window": (cfg.n_fft,)})
    return s


def official_state(cfg: WavTokenizerConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_shapes(cfg).items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        state[key] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        if key.endswith("weight_g"):
            state[key] = state[key].abs() + 0.5
        if key.endswith(("norm1.weight", "norm2.weight", "norm.weight", "scale.weight", "pos_net.5.weight",
                         "final_layer_norm.weight")):
            state[key] = 1 + 0.3 * torch.randn(shape, generator=g)
    state["head.istft.window"] = torch.hann_window(cfg.n_fft)
    state[Q + "inited"] = torch.ones(1)
    state[Q + "embed"] = 0.3 * torch.randn(cfg.codebook_size, cfg.dimension, generator=g)
    state["head.out.weight"] *= 0.3  # keeps exp(log-magnitude) under the 1e2 clip most of the time ...
    state["head.out.bias"][1:4] = 5.0  # ... except in three bins, which exercise the clip (e^5 > 1e2)
    # discriminators (ignored on load)
    state["multiperioddisc.discriminators.0.convs.0.weight_v"] = torch.randn(32, 1, 5, 1, generator=g)
    state["multiresddisc.discriminators.0.emb.weight"] = torch.randn(4, 64, generator=g)
    state["dac.discriminators.0.convs.0.bias"] = torch.randn(32, generator=g)
    return state


def write_official(tmp_path, cfg, state, name="model.ckpt"):
    path = tmp_path / name
    torch.save({"state_dict": state, "epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.8.6"}, path)
    return path


# --------------------------------------------------------------------- an independent direct computation
def ref_reflect_pad(x, left, right):
    max_pad = max(left, right)
    extra = max_pad - x.shape[-1] + 1 if x.shape[-1] <= max_pad else 0
    if extra:
        x = F.pad(x, (0, extra))
    y = F.pad(x, (left, right), mode="reflect")
    return y[..., : y.shape[-1] - extra]


def ref_conv(state, prefix, x, stride=1):
    v, g = state[prefix + "weight_v"], state[prefix + "weight_g"]
    conv = nn.Conv1d(v.shape[1], v.shape[0], v.shape[2], stride=stride)
    conv = torch.nn.utils.parametrizations.weight_norm(conv)
    with torch.no_grad():
        conv.parametrizations.weight.original0.copy_(g)
        conv.parametrizations.weight.original1.copy_(v)
        conv.bias.copy_(state[prefix + "bias"])
    k = v.shape[2]
    total = k - stride
    n_frames = (x.shape[-1] - k + total) / stride + 1  # the encodec formula for the last full window
    extra = (math.ceil(n_frames) - 1) * stride + (k - total) - x.shape[-1]
    return conv(ref_reflect_pad(x, total - total // 2, total // 2 + extra))


def ref_encode(state, cfg, wav):
    x = ref_conv(state, E + "0.conv.conv.", wav[:, None])
    for i, stride in enumerate(cfg.strides):
        p = f"{E}{1 + 3 * i}."
        h = ref_conv(state, p + "block.3.conv.conv.", F.elu(ref_conv(state, p + "block.1.conv.conv.", F.elu(x))))
        x = ref_conv(state, p + "shortcut.conv.conv.", x) + h
        x = ref_conv(state, f"{E}{3 + 3 * i}.conv.conv.", F.elu(x), stride=stride)
    lstm = nn.LSTM(x.shape[1], x.shape[1], 2)
    lp = f"{E}{1 + 3 * len(cfg.strides)}.lstm."
    lstm.load_state_dict({k[len(lp):]: v for k, v in state.items() if k.startswith(lp)})
    t = x.permute(2, 0, 1)
    x = (lstm(t)[0] + t).permute(1, 2, 0)
    feats = ref_conv(state, f"{E}{3 + 3 * len(cfg.strides)}.conv.conv.", F.elu(x))
    embed = state[Q + "embed"]
    dist = ((feats.transpose(1, 2)[:, :, None, :] - embed[None, None]) ** 2).sum(-1)
    return feats, dist.argmin(-1)


def ref_istft_same(spec, window, hop):
    """Per-frame real inverse DFT (explicit sums, float64), windowed overlap-add, trim, envelope division."""
    spec = spec.to(torch.complex128)
    n_fft = window.shape[0]
    b, bins, frames = spec.shape
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(bins, dtype=torch.float64)
    ang = 2 * math.pi * k[:, None] * n[None] / n_fft  # [bins, n_fft]
    coef = torch.full((bins,), 2.0, dtype=torch.float64)
    coef[0] = 1.0
    coef[-1] = 1.0  # DC and Nyquist appear once (their imaginary parts do not contribute)
    w = window.double()
    full = (frames - 1) * hop + n_fft
    y = torch.zeros(b, full, dtype=torch.float64)
    env = torch.zeros(full, dtype=torch.float64)
    for t in range(frames):
        s = spec[:, :, t]
        frame = ((coef * s.real)[:, :, None] * torch.cos(ang) - (coef * s.imag)[:, :, None] * torch.sin(ang)).sum(1)
        y[:, t * hop: t * hop + n_fft] += frame / n_fft * w
        env[t * hop: t * hop + n_fft] += w**2
    pad = (n_fft - hop) // 2
    return (y / env)[:, pad: full - pad]


def ref_decode(state, cfg, codes, bw=0):
    gn = lambda x, p: F.group_norm(x, 32, state[p + "weight"], state[p + "bias"], eps=1e-6)  # noqa: E731
    swish = lambda x: x * torch.sigmoid(x)  # noqa: E731
    x = state[Q + "embed"][codes].transpose(1, 2)
    x = F.conv1d(x, state["backbone.embed.weight"], state["backbone.embed.bias"], padding=3)
    for n in (0, 1, 2, 3, 4):
        p = f"backbone.pos_net.{n}."
        if n == 2:
            h = gn(x, p + "norm.")
            q, k, v = (F.conv1d(h, state[p + m + ".weight"], state[p + m + ".bias"]) for m in "qkv")
            w = torch.softmax(torch.bmm(q.permute(0, 2, 1), k) * q.shape[1] ** -0.5, dim=2)
            h = torch.bmm(v, w.permute(0, 2, 1))
            x = x + F.conv1d(h, state[p + "proj_out.weight"], state[p + "proj_out.bias"])
        else:
            h = F.conv1d(swish(gn(x, p + "norm1.")), state[p + "conv1.weight"], state[p + "conv1.bias"], padding=1)
            h = F.conv1d(swish(gn(h, p + "norm2.")), state[p + "conv2.weight"], state[p + "conv2.bias"], padding=1)
            x = x + h
    x = gn(x, "backbone.pos_net.5.")

    def ada(x, p):  # [B, L, C]
        return F.layer_norm(x, x.shape[-1:], eps=1e-6) * state[p + "scale.weight"][bw] + state[p + "shift.weight"][bw]

    x = ada(x.transpose(1, 2), "backbone.norm.").transpose(1, 2)
    for n in range(cfg.num_layers):
        p = f"backbone.convnext.{n}."
        h = F.conv1d(x, state[p + "dwconv.weight"], state[p + "dwconv.bias"], padding=3, groups=x.shape[1])
        h = ada(h.transpose(1, 2), p + "norm.")
        h = F.linear(F.gelu(F.linear(h, state[p + "pwconv1.weight"], state[p + "pwconv1.bias"])),
                     state[p + "pwconv2.weight"], state[p + "pwconv2.bias"])
        x = x + (state[p + "gamma"] * h).transpose(1, 2)
    x = F.layer_norm(x.transpose(1, 2), x.shape[1:2], state["backbone.final_layer_norm.weight"],
                     state["backbone.final_layer_norm.bias"], eps=1e-6)
    out = F.linear(x, state["head.out.weight"], state["head.out.bias"]).transpose(1, 2)
    logmag, phase = out.chunk(2, dim=1)
    mag = torch.exp(logmag).clip(max=1e2)
    return ref_istft_same(mag * (torch.cos(phase) + 1j * torch.sin(phase)), state["head.istft.window"], cfg.hop_length)


# ------------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def tiny():
    cfg = WavTokenizerConfig.preset("tiny")
    return cfg, official_state(cfg)


def test_official_layout_counts_match_reference_for_40hz():
    """The full 40 Hz checkpoint has 289 generator keys (§A.7); ours maps exactly the 227 we use."""
    cfg = WavTokenizerConfig.preset("40hz")
    shapes = official_shapes(cfg)
    assert len(shapes) == 289
    with torch.device("meta"):
        model = WavTokenizer(cfg)
        state = {k: torch.empty(s) for k, s in shapes.items()}
    ours = convert_official_state(state, model.state_dict())
    assert set(ours) == set(model.state_dict())
    assert sum(1 for k in shapes if not k.startswith(D)) == 227
    assert sum(p.numel() for p in model.backbone.parameters()) == 61_961_472  # §A.5
    # §A.3 counts the encoder with weight_g + weight_v: folding drops one scalar per conv output channel.
    n_g = sum(math.prod(s) for k, s in shapes.items() if k.startswith(E) and k.endswith("weight_g"))
    assert sum(p.numel() for p in model.encoder.parameters()) + n_g == 8_303_104


def test_encoder_parameter_count_75hz():
    with torch.device("meta"):
        model = WavTokenizer(WavTokenizerConfig.preset("75hz"))
    shapes = official_shapes(model.cfg)
    n_g = sum(math.prod(s) for k, s in shapes.items() if k.startswith(E) and k.endswith("weight_g"))
    assert sum(p.numel() for p in model.encoder.parameters()) + n_g == 8_802_816


@pytest.mark.parametrize("preset,num_samples", [("tiny", 1), ("tiny", 3), ("tiny", 8), ("tiny", 9),
                                                ("tiny", 200), ("tiny-odd", 2), ("tiny-odd", 31), ("tiny-odd", 300)])
def test_forward_matches_direct_computation(tmp_path, preset, num_samples, caplog):
    """Odd strides (tiny-odd: 2, 3, 5) make the reflect padding asymmetric; short inputs take the zero-extend path."""
    cfg = WavTokenizerConfig.preset(preset)
    state = official_state(cfg)
    with caplog.at_level(logging.DEBUG, logger="aromni.tokenizers.speech.wavtokenizer.official"):
        model = WavTokenizer.from_official(cfg, write_official(tmp_path, cfg, state))
    assert "ignored" in caplog.text and "unused SEANet-decoder keys" in caplog.text
    wav = 0.5 * torch.randn(2, num_samples)
    with torch.no_grad():
        feats_ref, codes_ref = ref_encode(state, cfg, wav)
        feats = model.encode_features(wav)
    torch.testing.assert_close(feats, feats_ref, rtol=1e-5, atol=1e-5)
    codes = model.encode(wav)
    assert codes.shape == (2, math.ceil(num_samples / cfg.hop_length))
    assert torch.equal(codes, codes_ref)
    for bw in (0, 2):
        out = model.decode(codes, bandwidth_id=bw)
        with torch.no_grad():
            ref = ref_decode(state, cfg, codes, bw)
        assert out.shape == (2, codes.shape[1] * cfg.hop_length)
        torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_parametrizations_key_variant_loads_identically(tmp_path, tiny):
    cfg, state = tiny
    renamed = {k.replace(".weight_g", ".parametrizations.weight.original0")
               .replace(".weight_v", ".parametrizations.weight.original1"): v for k, v in state.items()}
    a = WavTokenizer.from_official(cfg, write_official(tmp_path, cfg, state, "a.ckpt"))
    b = WavTokenizer.from_official(cfg, write_official(tmp_path, cfg, renamed, "b.ckpt"))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_weight_norm_is_folded_per_output_channel(tmp_path, tiny):
    cfg, state = tiny
    model = WavTokenizer.from_official(cfg, write_official(tmp_path, cfg, state))
    v, g = state[E + "3.conv.conv.weight_v"], state[E + "3.conv.conv.weight_g"]
    w = model.encoder.model[3].weight
    torch.testing.assert_close(w.flatten(1).norm(dim=1), g.flatten(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(w / w.flatten(1).norm(dim=1)[:, None, None], v / v.flatten(1).norm(dim=1)[:, None, None])


def test_official_yaml_40hz_and_75hz(tmp_path):
    def yaml_text(down, n_fft, hop):
        return {"seed_everything": 3407, "model": {"class_path": "decoder.experiment.WavTokenizer", "init_args": {
            "sample_rate": 24000, "initial_learning_rate": 2e-4,
            "feature_extractor": {"class_path": "decoder.feature_extractors.EncodecFeatures", "init_args": {
                "encodec_model": "encodec_24khz", "bandwidths": [6.6, 6.6, 6.6, 6.6], "train_codebooks": True,
                "num_quantizers": 1, "dowmsamples": down, "vq_bins": 4096, "vq_kmeans": 200}},
            "backbone": {"class_path": "decoder.models.VocosBackbone", "init_args": {
                "input_channels": 512, "dim": 768, "intermediate_dim": 2304, "num_layers": 12,
                "adanorm_num_embeddings": 4}},
            "head": {"class_path": "decoder.heads.ISTFTHead", "init_args": {
                "dim": 768, "n_fft": n_fft, "hop_length": hop, "padding": "same"}}}}}

    from aromni.tokenizers.speech.wavtokenizer.config import config_from_official_yaml

    for name, down, n_fft, hop in (("40hz", [6, 5, 5, 4], 2400, 600), ("75hz", [8, 5, 4, 2], 1280, 320)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(yaml_text(down, n_fft, hop)))
        cfg = config_from_official_yaml(path)
        assert cfg == WavTokenizerConfig.preset(name)
        assert cfg.hop_length == hop
    bad = yaml_text([6, 5, 5, 4], 2400, 320)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(CheckpointError, match="hop_length"):
        config_from_official_yaml(tmp_path / "bad.yaml")
    del bad["model"]["init_args"]["head"]["init_args"]["n_fft"]
    bad["model"]["init_args"]["head"]["init_args"]["hop_length"] = 600
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(CheckpointError, match="n_fft"):
        config_from_official_yaml(tmp_path / "bad.yaml")
    (tmp_path / "junk.yaml").write_text("just: [a, list")
    with pytest.raises(CheckpointError, match="junk.yaml"):
        config_from_official_yaml(tmp_path / "junk.yaml")


def test_save_load_round_trip_is_bit_exact(tmp_path, tiny):
    cfg, state = tiny
    model = WavTokenizer.from_official(cfg, write_official(tmp_path, cfg, state))
    model.save_pretrained(tmp_path / "wt")
    again = load_tokenizer(tmp_path / "wt")
    assert isinstance(again, WavTokenizer) and again.cfg == cfg
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    wav = torch.randn(1, 100)
    codes = model.encode(wav)
    assert torch.equal(codes, again.encode(wav))
    assert torch.equal(model.decode(codes), again.decode(codes))
    with pytest.raises(InputError, match="already exists"):
        model.save_pretrained(tmp_path / "wt")
    model.save_pretrained(tmp_path / "wt", overwrite=True)


class _NotATensor:
    pass


def _expect(tmp_path, cfg, state, match, name="bad.ckpt"):
    with pytest.raises(CheckpointError, match=match):
        WavTokenizer.from_official(cfg, write_official(tmp_path, cfg, state, name))


def test_malformed_official_checkpoints_fail_clearly(tmp_path, tiny):
    cfg, state = tiny
    missing = dict(state)
    del missing["backbone.convnext.1.gamma"]
    _expect(tmp_path, cfg, missing, r"missing generator key 'backbone\.convnext\.1\.gamma'")
    half = dict(state)
    del half[E + "3.conv.conv.weight_g"]
    _expect(tmp_path, cfg, half, r"missing generator key '.*model\.3\.conv\.conv\.weight_g'")
    no_lstm = {k: v for k, v in state.items() if "lstm.weight_hh_l1" not in k or k.startswith(D)}
    _expect(tmp_path, cfg, no_lstm, r"lstm\.weight_hh_l1")
    shaped = dict(state)
    shaped["head.out.weight"] = torch.zeros(7, cfg.backbone_dim)
    _expect(tmp_path, cfg, shaped, r"head\.out\.weight has shape \(7, 64\)")
    extra = dict(state)
    extra["backbone.convnext.9.gamma"] = torch.zeros(cfg.backbone_dim)
    _expect(tmp_path, cfg, extra, r"unexpected generator key 'backbone\.convnext\.9\.gamma'")
    two_q = dict(state)
    two_q["feature_extractor.encodec.quantizer.vq.layers.1._codebook.embed"] = torch.zeros(4, 4)
    _expect(tmp_path, cfg, two_q, r"vq\.layers\.1")
    # a pickle that needs arbitrary Python objects
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": state, "callback": _NotATensor()}, evil)
    with pytest.raises(CheckpointError, match="arbitrary .*Python objects"):
        WavTokenizer.from_official(cfg, evil)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.ckpt"):
        WavTokenizer.from_official(cfg, garbage)
    torch.save({"something": torch.zeros(2)}, tmp_path / "nostate.ckpt")
    with pytest.raises(CheckpointError, match="state_dict"):
        WavTokenizer.from_official(cfg, tmp_path / "nostate.ckpt")
    with pytest.raises(CheckpointError, match="absent.ckpt"):
        WavTokenizer.from_official(cfg, tmp_path / "absent.ckpt")


def test_malformed_saved_directories_fail_clearly(tmp_path, tiny):
    cfg, _ = tiny
    model = WavTokenizer(cfg)
    model.save_pretrained(tmp_path / "wt")
    (tmp_path / "wt" / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        WavTokenizer.from_pretrained(tmp_path / "wt")
    other = WavTokenizer(WavTokenizerConfig.preset("tiny-odd"))
    other.save_pretrained(tmp_path / "odd")
    (tmp_path / "odd" / "config.json").write_text((tmp_path / "wt" / "config.json").read_text())
    with pytest.raises(CheckpointError, match="do not match|shape"):
        WavTokenizer.from_pretrained(tmp_path / "odd")
    (tmp_path / "odd" / "config.json").write_text('{"type": "bpe"}')
    with pytest.raises(CheckpointError, match="not a wavtokenizer config"):
        WavTokenizer.from_pretrained(tmp_path / "odd")


# ------------------------------------------------------------------------------------------- ISTFT head
@pytest.mark.parametrize("n_fft,hop,frames", [(32, 8, 1), (32, 8, 7), (120, 30, 2), (2400, 600, 3)])
def test_istft_same_matches_direct_overlap_add(n_fft, hop, frames):
    from aromni.tokenizers.speech.wavtokenizer.head import istft_same

    spec = torch.complex(torch.randn(2, n_fft // 2 + 1, frames), torch.randn(2, n_fft // 2 + 1, frames))
    out = istft_same(spec, torch.hann_window(n_fft), hop)
    assert out.shape == (2, frames * hop)
    ref = ref_istft_same(spec, torch.hann_window(n_fft), hop)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


@pytest.mark.parametrize("n_fft,hop,frames", [(32, 8, 5), (120, 30, 4), (1280, 320, 3)])
def test_istft_same_trimming_inverts_a_same_padded_stft(n_fft, hop, frames):
    """STFT with (n_fft - hop)/2 zeros on each side, then the head's ISTFT, gives the signal back sample-exactly
    aligned: a trim off by even one sample fails."""
    from aromni.tokenizers.speech.wavtokenizer.head import istft_same

    window = torch.hann_window(n_fft, dtype=torch.float64)
    x = torch.randn(2, frames * hop, dtype=torch.float64)
    pad = (n_fft - hop) // 2
    xp = F.pad(x, (pad, pad))
    segs = torch.stack([xp[:, t * hop: t * hop + n_fft] for t in range(frames)], dim=-1)  # [B, n_fft, F]
    spec = torch.fft.rfft(segs * window[None, :, None], dim=1)
    torch.testing.assert_close(istft_same(spec, window, hop), x, rtol=1e-9, atol=1e-9)


def test_head_clips_magnitude_and_splits_log_magnitude_then_phase():
    from aromni.tokenizers.speech.wavtokenizer.head import ISTFTHead, istft_same

    head = ISTFTHead(4, 32, 8)
    with torch.no_grad():
        head.out.weight.zero_()
        head.out.bias.zero_()
        head.out.bias[:17] = torch.linspace(-1, 6, 17)  # log-magnitudes; e^6 > 1e2 gets clipped
        head.out.bias[17:] = torch.linspace(0, 3, 17)  # phases
    out = head(torch.zeros(1, 3, 4))
    mag = torch.exp(torch.linspace(-1, 6, 17)).clip(max=100.0)
    spec = (mag * torch.exp(1j * torch.linspace(0, 3, 17)))[None, :, None].expand(1, 17, 3)
    torch.testing.assert_close(out, istft_same(spec, torch.hann_window(32), 8))
