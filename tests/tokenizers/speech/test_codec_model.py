"""StreamingCodec: frame counts at edge cases, save/load bit-exactness, config and input validation."""

from __future__ import annotations

import json

import pytest
import torch

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.tokenizers.base import SpeechTokenizer, load_tokenizer
from aromni.tokenizers.speech.codec import CodecConfig, StreamingCodec


@pytest.fixture(scope="module")
def codec() -> StreamingCodec:
    torch.manual_seed(0)
    return StreamingCodec(CodecConfig.preset("tiny")).eval()


@pytest.mark.parametrize("samples", [1, 399, 400, 401, 799, 800, 3 * 400 + 1, 16000])
def test_encode_gives_ceil_frames_and_decode_whole_frames(codec, samples):
    wav = torch.randn(2, samples) * 0.1
    codes = codec.encode(wav)
    frames = -(-samples // codec.hop_length)
    assert codes.shape == (2, frames) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < codec.codebook_size
    assert codec.decode(codes).shape == (2, frames * codec.hop_length)


def test_empty_input_gives_empty_output(codec):
    assert codec.encode(torch.zeros(1, 0)).shape == (1, 0)
    assert codec.decode(torch.zeros(1, 0, dtype=torch.long)).shape == (1, 0)


def test_encode_of_padded_tail_equals_encode_of_exact_frames(codec):
    # T not a multiple of hop is zero-padded: same codes as padding by hand
    wav = torch.randn(1, 1000) * 0.1
    assert torch.equal(codec.encode(wav), codec.encode(torch.nn.functional.pad(wav, (0, 200))))


def test_batch_rows_are_independent(codec):
    wav = torch.randn(3, 4000) * 0.1
    codes = codec.encode(wav)
    assert torch.equal(codes[1:2], codec.encode(wav[1:2]))
    assert torch.allclose(codec.decode(codes)[2:3], codec.decode(codes[2:3]), atol=1e-6)


def test_save_load_bit_exact_and_dispatch(codec, tmp_path):
    codec.save_pretrained(tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    assert meta["type"] == "aromni_codec" and meta["config"] == codec.config.to_dict()
    loaded = load_tokenizer(tmp_path / "c")
    assert isinstance(loaded, StreamingCodec) and isinstance(loaded, SpeechTokenizer)
    sd, sd2 = codec.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    wav = torch.randn(1, 5000) * 0.1
    codes = codec.encode(wav)
    assert torch.equal(loaded.encode(wav), codes)
    assert torch.equal(loaded.decode(codes), codec.decode(codes))
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dirs left behind


def test_save_refuses_to_overwrite_and_load_rejects_bad_dirs(codec, tmp_path):
    codec.save_pretrained(tmp_path / "c")
    with pytest.raises(InputError):
        codec.save_pretrained(tmp_path / "c")
    codec.save_pretrained(tmp_path / "c", overwrite=True)
    other = StreamingCodec(CodecConfig.preset("tiny", dec_dim=48))
    other.save_pretrained(tmp_path / "d")
    # weights of one config under another config's json
    (tmp_path / "d" / "config.json").write_text((tmp_path / "c" / "config.json").read_text())
    with pytest.raises(CheckpointError):
        StreamingCodec.from_pretrained(tmp_path / "d")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "config.json").write_text(json.dumps({"type": "wavtokenizer"}))
    with pytest.raises(CheckpointError):
        StreamingCodec.from_pretrained(tmp_path / "e")


def test_metadata(codec):
    m = codec.metadata()
    assert m["codebook_size"] == 1024 and m["sample_rate"] == 16000 and m["hop_length"] == 400
    assert m["frame_rate"] == 40.0 and m["lookahead_frames"] == codec.lookahead_frames == 1
    assert m["streaming_exact"] is True


def test_bad_inputs_raise_input_error(codec):
    with pytest.raises(InputError):
        codec.encode(torch.zeros(400))  # missing batch dimension
    with pytest.raises(InputError):
        codec.decode(torch.tensor([[0, 1024]]))
    with pytest.raises(InputError):
        codec.decode(torch.tensor([[-1]]))
    with pytest.raises(InputError):
        codec.decode(torch.zeros(1, 3))  # float codes


@pytest.mark.parametrize("bad", [{"hop_length": 401}, {"head_n_fft": 250}, {"head_n_fft": 200},
                                 {"lookahead": -1}, {"enc_kernel": 4}, {"codebook_size": 0},
                                 {"dec_mlp_ratio": 0.0}])
def test_config_validation(bad):
    with pytest.raises(ConfigError):
        CodecConfig.preset("tiny", **bad)


def test_config_presets_and_unknown_keys():
    assert CodecConfig.preset("toy").frame_rate == 40.0
    with pytest.raises(ConfigError):
        CodecConfig.preset("huge")
    with pytest.raises(ConfigError):
        CodecConfig.from_dict({"nope": 1})
    cfg = CodecConfig.preset("tiny", sample_rate=24000, hop_length=600, head_n_fft=600)
    codec = StreamingCodec(cfg).eval()
    assert codec.encode(torch.zeros(1, 24000)).shape == (1, 40)
