"""The FSQ speech tokenizer: 25 Hz length arithmetic at 24 and 16 kHz, a clip's tokens do not depend on its batch,
save/load gives identical codes (also through load_tokenizer), decoding goes through an attached TokenVocoder (a
one-line error when none is), the token2wav/ hook, and bad inputs give one-line errors."""

from __future__ import annotations

import math

import pytest
import torch

from aromni.cosyvoice import fsq_tokenizer
from aromni.cosyvoice.fsq_config import FSQTokenizerConfig
from aromni.cosyvoice.fsq_tokenizer import FSQSpeechTokenizer, TokenVocoder, ctc_greedy, text_to_ids
from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.tokenizers.base import load_tokenizer
from aromni.tokenizers.streaming import SpeechStreamDecoder
from aromni.utils.io import atomic_write_json

TINY = FSQTokenizerConfig(dim=32, heads=2, encoder1_layers=1, encoder2_layers=1, code_dims=4, fsmn_kernel=5)


def _speechlike(n: int, seed: int) -> torch.Tensor:
    """``[n]`` samples of a few decaying tones plus noise (enough spectral structure to spread the codes)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    f = torch.randint(100, 3000, (3,), generator=g).float()
    wav = sum(torch.sin(2 * math.pi * fi * t * (1 + 0.3 * t)) for fi in f) / 3
    return (0.3 * wav * torch.sin(2 * math.pi * 3 * t).abs() + 0.01 * torch.randn(n, generator=g)).float()


@pytest.fixture(scope="module")
def tok() -> FSQSpeechTokenizer:
    torch.manual_seed(0)
    model = FSQSpeechTokenizer(TINY).eval()
    with torch.no_grad():  # spread the random projection so that the codes are not all one value
        model.fsq.project_down.weight.mul_(20)
    return model


@pytest.mark.parametrize("samples", [1, 959, 960, 961, 24000, 24000 + 480, 3 * 24000 - 1])
def test_24k_encode_gives_one_code_per_960_samples(tok, samples):
    codes = tok.encode(torch.randn(2, samples) * 0.1)
    assert codes.shape == (2, math.ceil(samples / 960)) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < tok.codebook_size == 81
    assert tok.sample_rate == 24000 and tok.hop_length == 960 and tok.frame_rate == 25.0


@pytest.mark.parametrize("samples", [1, 639, 640, 641, 16000, 16321])
def test_16k_encode_gives_one_code_per_640_samples(tok, samples):
    codes, lengths = tok.encode_16k(torch.randn(1, samples) * 0.1)
    assert lengths.tolist() == [math.ceil(samples / 640)] and codes.shape == (1, lengths.item())


def test_a_padded_batch_equals_each_clip_alone(tok):
    clips = [_speechlike(n, i) for i, n in enumerate((16000, 7000, 23999, 640))]
    batch = torch.zeros(len(clips), max(c.numel() for c in clips))
    for i, c in enumerate(clips):
        batch[i, : c.numel()] = c
    codes, lengths = tok.encode_16k(batch, torch.tensor([c.numel() for c in clips]))
    listed, listed_len = tok.encode_16k(clips)
    assert torch.equal(codes, listed) and torch.equal(lengths, listed_len)
    for i, c in enumerate(clips):
        alone, n = tok.encode_16k(c[None])
        assert n.item() == lengths[i] and torch.equal(alone[0], codes[i, : lengths[i]]), i
        assert (codes[i, lengths[i]:] == 0).all()
    assert codes.unique().numel() > 3  # the comparison is not between constant sequences


def test_save_and_load_give_identical_codes(tok, tmp_path):
    tok.save_pretrained(tmp_path / "t")
    clips = [_speechlike(12000, 7), _speechlike(5000, 8)]
    for loaded in (FSQSpeechTokenizer.from_pretrained(tmp_path / "t"), load_tokenizer(tmp_path / "t")):
        assert isinstance(loaded, FSQSpeechTokenizer) and loaded.config == TINY
        assert all(torch.equal(a, b) for a, b in zip(loaded.encode_16k(clips), tok.encode_16k(clips)))
        assert loaded.metadata()["codebook_size"] == 81 and loaded.token2wav is None
    with pytest.raises(InputError, match="not empty"):
        tok.save_pretrained(tmp_path / "t")


def test_forward_lengths_and_ctc_frames(tok):
    mel, mel_len = tok.features([_speechlike(16000, 1), _speechlike(6400, 2)])
    assert mel.shape == (2, 128, 100) and mel_len.tolist() == [100, 40]
    out = tok(mel, mel_len)
    assert out.lengths.tolist() == [25, 10] and out.codes.shape == (2, 25)
    assert out.logits.shape == (2, 50, 1 + len(TINY.alphabet)) and out.logit_lengths.tolist() == [50, 20]


def test_ctc_text_helpers():
    ids = text_to_ids("It's  a Cat!", "abcdefghijklmnopqrstuvwxyz '")
    assert ids == [9, 20, 28, 19, 27, 1, 27, 3, 1, 20]
    logits = torch.full((1, 8, 29), -5.0)
    for t, k in enumerate([3, 3, 0, 3, 27, 0, 1, 1]):
        logits[0, t, k] = 5.0
    assert ctc_greedy(logits, torch.tensor([8]), "abcdefghijklmnopqrstuvwxyz '") == ["cc a"]


class _Silence(SpeechStreamDecoder):
    def init_state(self, batch_size):
        return {"frames": 0}

    def step(self, codes, state):
        return torch.zeros(codes.shape[0], codes.shape[1] * 960)

    def finish(self, state):
        return torch.zeros(self.batch_size, 0)


class _FakeToken2Wav:
    """A test double: each code becomes 960 samples of its index / 1000."""

    sample_rate = 24000
    loaded_from: list = []

    @classmethod
    def from_pretrained(cls, folder):
        cls.loaded_from.append(folder)
        return cls()

    def synthesize(self, codes):
        return codes.float().repeat_interleave(960, dim=1) / 1000

    def stream_decoder(self, batch_size):
        return _Silence(batch_size)


def test_decode_without_token2wav_is_one_line_error_and_attached_one_is_used(tok):
    codes = torch.tensor([[1, 2, 3]])
    for call in (lambda: tok.decode(codes), lambda: tok.stream_decoder(1)):
        with pytest.raises(CheckpointError, match="none is attached") as e:
            call()
        assert "\n" not in str(e.value) and "attach_token2wav" in str(e.value)
    fresh = FSQSpeechTokenizer(TINY)
    fresh.attach_token2wav(_FakeToken2Wav())
    assert isinstance(fresh.token2wav, TokenVocoder)
    wav = fresh.decode(codes)
    assert wav.shape == (1, 3 * 960) and wav[0, 960].item() == pytest.approx(0.002)
    with fresh.streaming(1) as dec:
        assert dec.push(codes).shape == (1, 2880)
    with pytest.raises(InputError, match="must lie in"):
        fresh.decode(torch.tensor([[81]]))
    with pytest.raises(InputError, match="not a TokenVocoder"):
        fresh.attach_token2wav(object())
    fresh.attach_token2wav(None)
    assert fresh.token2wav is None and "_token2wav" not in dict(fresh.named_modules())


def test_token2wav_subfolder_hook(tok, tmp_path, monkeypatch):
    tok.save_pretrained(tmp_path / "t")
    atomic_write_json(tmp_path / "t" / "token2wav" / "config.json", {"type": "toy_flow_hift"})
    with pytest.raises(CheckpointError, match="unknown token-to-waveform type 'toy_flow_hift'"):
        FSQSpeechTokenizer.from_pretrained(tmp_path / "t")
    monkeypatch.setattr(_FakeToken2Wav, "loaded_from", [])
    monkeypatch.setitem(fsq_tokenizer.TOKEN2WAV_TYPES, "toy_flow_hift", f"{__name__}:_FakeToken2Wav")
    loaded = FSQSpeechTokenizer.from_pretrained(tmp_path / "t")
    assert _FakeToken2Wav.loaded_from == [tmp_path / "t" / "token2wav"]
    assert isinstance(loaded.token2wav, _FakeToken2Wav)
    assert loaded.decode(torch.tensor([[5]])).shape == (1, 960)


def test_bad_inputs_give_one_line_errors(tok, tmp_path):
    cases = [(lambda: tok.encode(torch.zeros(100)), InputError, "batch"),
             (lambda: tok.encode(torch.zeros(1, 0)), InputError, "empty"),
             (lambda: tok.encode_16k(torch.zeros(2, 3, 4)), InputError, "batch"),
             (lambda: tok.encode_16k([torch.zeros(0)]), InputError, "non-empty"),
             (lambda: tok.encode_16k([]), InputError, "no audio"),
             (lambda: tok.encode_16k(torch.zeros(2, 100), torch.tensor([100, 0])), InputError, "do not fit"),
             (lambda: tok.decode(torch.tensor([1])), CheckpointError, "none is attached"),
             (lambda: FSQSpeechTokenizer.from_pretrained(tmp_path / "missing"), CheckpointError, "no config.json"),
             (lambda: FSQTokenizerConfig(dim=30, heads=4), ConfigError, "heads"),
             (lambda: FSQTokenizerConfig(code_dims=0), ConfigError, "code_dims")]
    for call, kind, words in cases:
        with pytest.raises(kind, match=words) as e:
            call()
        assert "\n" not in str(e.value)
    tok.save_pretrained(tmp_path / "broken")
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="corrupt"):
        FSQSpeechTokenizer.from_pretrained(tmp_path / "broken")
