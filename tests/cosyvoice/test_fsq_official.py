"""CosyVoice2's released tokenizer path: a tiny ONNX file laid out as ``speech_tokenizer_v2.onnx`` (initializer and
node names as s3tokenizer's converter reads the release) loads through our path without any download, and gives
the same token ids as s3tokenizer's own model on the same weights and its own mel front end."""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest
import torch

from aromni.errors import CheckpointError, InputError, MissingExtraError

onnx = pytest.importorskip("onnx")
if importlib.util.find_spec("s3tokenizer") is None:  # importorskip would also skip on a broken torchaudio
    pytest.skip("s3tokenizer is not installed (the 's3' extra)", allow_module_level=True)

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from aromni.cosyvoice.s3_official import S3OfficialTokenizer, import_s3tokenizer  # noqa: E402

N_MELS, WIDTH, LAYERS = 128, 128, 2  # heads of 64, as s3tokenizer's rotary table requires


def _tiny_release_graph(path, seed: int = 0, skip: str = "") -> None:
    """A weights-only ONNX graph named like the release: the four stem convolution initializers and the FSQ
    projection under their exported ``onnx::*`` names, block weights as inputs of ``/blocks.i/...`` nodes."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def node(op, name, weights, *, extra=()):
        names = []
        for init_name, shape, scale in weights:
            inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), init_name))
            names.append(init_name)
        if skip and skip in name:
            return
        inputs = ["x", *names] if op != "Add" else [names[0], "x"]
        nodes.append(helper.make_node(op, inputs + list(extra), [name + "_out"], name=name))

    w = WIDTH
    node("Conv", "/encoder/conv1/Conv", [("onnx::Conv_2216", (w, N_MELS, 3), 0.1), ("onnx::Conv_2217", (w,), 0.1)])
    node("Conv", "/encoder/conv2/Conv", [("onnx::Conv_2218", (w, w, 3), 0.05), ("onnx::Conv_2219", (w,), 0.1)])
    for i in range(LAYERS):
        b = f"/blocks.{i}"
        for ln in ("attn_ln", "mlp_ln"):
            node("LayerNormalization", f"{b}/{ln}/LayerNormalization",
                 [(f"encoder.blocks.{i}.{ln}.scale", (w,), 0.2), (f"encoder.blocks.{i}.{ln}.b", (w,), 0.1)])
            inits[-2] = numpy_helper.from_array(numpy_helper.to_array(inits[-2]) + 1.0, inits[-2].name)
        for proj, bias in (("query", True), ("key", False), ("value", True), ("out", True)):
            node("MatMul", f"{b}/attn/{proj}/MatMul", [(f"onnx::MatMul_{i}_{proj}", (w, w), 0.08)])
            if bias:
                node("Add", f"{b}/attn/{proj}/Add", [(f"encoder.blocks.{i}.attn.{proj}.bias", (w,), 0.05)])
        node("Conv", f"{b}/attn/fsmn_block/Conv", [(f"onnx::Conv_{i}_fsmn", (w, 1, 31), 0.05)])
        for k, (fan_in, fan_out) in ((0, (w, 4 * w)), (2, (4 * w, w))):
            node("MatMul", f"{b}/mlp/mlp.{k}/MatMul", [(f"onnx::MatMul_{i}_mlp{k}", (fan_in, fan_out), 0.05)])
            node("Add", f"{b}/mlp/mlp.{k}/Add", [(f"encoder.blocks.{i}.mlp.{k}.bias", (fan_out,), 0.05)])
    node("MatMul", "/quantizer/project_in/MatMul", [("onnx::MatMul_2536", (w, 8), 0.3)])
    node("Add", "/quantizer/project_in/Add", [("quantizer.project_in.bias", (8,), 0.1)])
    graph = helper.make_graph(nodes, "tiny_speech_tokenizer_v2",
                              [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, N_MELS, None])],
                              [helper.make_tensor_value_info("indices", TensorProto.INT64, [1, None])], inits)
    onnx.save(helper.make_model(graph), str(path))


def _clip(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    tones = sum(torch.sin(2 * math.pi * f * t) for f in torch.randint(150, 3000, (3,), generator=g).tolist())
    return (0.2 * tones * (1 + torch.sin(2 * math.pi * 2 * t)) + 0.02 * torch.randn(n, generator=g)).float()


def test_ours_equals_s3tokenizers_own_model_on_the_same_file(tmp_path):
    path = tmp_path / "speech_tokenizer_v2.onnx"
    _tiny_release_graph(path)
    ours = S3OfficialTokenizer.from_onnx(path)
    s3 = import_s3tokenizer()
    ref = s3.S3TokenizerV2("speech_tokenizer_v2_25hz", s3.model_v2.ModelConfig(
        n_mels=N_MELS, n_audio_state=WIDTH, n_audio_head=WIDTH // 64, n_audio_layer=LAYERS))
    ref.init_from_onnx(str(path))  # s3tokenizer's own loading
    clips = [_clip(n, i) for i, n in enumerate((16000, 9600, 30000, 4321))]
    mels = [s3.log_mel_spectrogram(c, n_mels=N_MELS) for c in clips]
    want, want_len = ref.quantize(*s3.padding(mels))
    got, got_len = ours.encode_16k(clips)
    assert got_len.tolist() == want_len.tolist() == [math.ceil(len(m[0]) / 4) for m in mels]
    for i, n in enumerate(got_len.tolist()):
        assert got[i, :n].tolist() == want[i, :n].tolist(), i
    assert got.unique().numel() > 5 and int(got.max()) < 6561  # real variety, not one constant code
    # a padded batch gives each clip its own tokens
    batch = torch.zeros(2, 30000)
    batch[0], batch[1, :9600] = clips[2], clips[1]
    padded, padded_len = ours.encode_16k(batch, torch.tensor([30000, 9600]))
    assert torch.equal(padded[0], got[2, : padded.shape[1]]) and torch.equal(padded[1, :15], got[1, :15])


def test_missing_wrong_or_damaged_files_and_bad_audio_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="no such file") as e:
        S3OfficialTokenizer.from_onnx(tmp_path / "speech_tokenizer_v2.onnx")
    assert "never downloads" in str(e.value)
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01 not onnx")
    with pytest.raises(CheckpointError, match="could not read"):
        S3OfficialTokenizer.from_onnx(tmp_path / "junk.onnx")
    empty = helper.make_model(helper.make_graph([], "empty", [], []))
    onnx.save(empty, str(tmp_path / "empty.onnx"))
    with pytest.raises(CheckpointError, match="not CosyVoice2's speech tokenizer v2"):
        S3OfficialTokenizer.from_onnx(tmp_path / "empty.onnx")
    _tiny_release_graph(tmp_path / "partial.onnx", skip="blocks.1/attn/fsmn_block")
    with pytest.raises(CheckpointError, match="do not fit S3TokenizerV2.*fsmn_block") as e:
        S3OfficialTokenizer.from_onnx(tmp_path / "partial.onnx")
    assert "\n" not in str(e.value)
    _tiny_release_graph(tmp_path / "ok.onnx")
    tok = S3OfficialTokenizer.from_onnx(tmp_path / "ok.onnx")
    for call, words in ((lambda: tok.encode_16k(torch.zeros(16000)), "batch"),
                        (lambda: tok.encode_16k([torch.zeros(10)]), "at least 160"),
                        (lambda: tok.encode_16k([torch.zeros(31 * 16000)]), "at most 30 s")):
        with pytest.raises(InputError, match=words) as e:
            call()
        assert "\n" not in str(e.value)


def test_missing_package_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3tokenizer", None)  # "not installed"
    with pytest.raises(MissingExtraError, match="s3tokenizer") as e:
        import_s3tokenizer()
    assert 'aromni[s3]' in str(e.value) and "\n" not in str(e.value)
