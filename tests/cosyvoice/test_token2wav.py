"""The token-to-waveform chain (flow + HiFT), offline and streaming as CosyVoice2 does it."""

from __future__ import annotations

import pytest
import torch

from aromni.cosyvoice.flow import FlowConfig, Token2Mel
from aromni.cosyvoice.fsq_config import FSQTokenizerConfig
from aromni.cosyvoice.fsq_tokenizer import FSQSpeechTokenizer
from aromni.cosyvoice.hift import HiFTConfig, HiFTGenerator
from aromni.cosyvoice.token2wav import Token2Wav, Token2WavConfig, hamming_crossfade
from aromni.errors import CheckpointError, InputError
from aromni.tokenizers.base import load_tokenizer

VOCAB = 81


@pytest.fixture(scope="module")
def chain() -> Token2Wav:
    torch.manual_seed(0)
    flow = Token2Mel(FlowConfig.preset("toy", vocab_size=VOCAB, encoder={"d_model": 32, "heads": 2,
                                                                         "linear_units": 64},
                                       estimator={"channels": 32, "attention_head_dim": 16, "num_heads": 2,
                                                  "num_mid_blocks": 1}))
    hift = HiFTGenerator(HiFTConfig(base_channels=16, f0_channels=16))
    return Token2Wav(flow, hift, config=Token2WavConfig(n_timesteps=2))


def _codes(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(seed))


def test_offline_length_and_determinism(chain: Token2Wav) -> None:
    codes = _codes(30)
    a, b = chain.synthesize(codes), chain.synthesize(codes)
    assert a.shape == (1, 30 * 960)
    assert torch.equal(a, b)


def _stream(chain: Token2Wav, codes: torch.Tensor, step: int) -> list[torch.Tensor]:
    out = []
    with chain.stream_decoder(codes.shape[0]).streaming() as dec:
        for i in range(0, codes.shape[1], step):
            out.append(dec.push(codes[:, i:i + step]))
        out.append(dec.flush())
    return out


def test_stream_chunk_schedule_and_total_length(chain: Token2Wav) -> None:
    """The first audio comes once 25 + 3 tokens exist; the hop then doubles (50, 100, 100 ...); the whole stream
    is as long as the offline audio."""
    codes = _codes(200)
    out = _stream(chain, codes, 1)
    sizes = [(i, o.shape[1]) for i, o in enumerate(out) if o.shape[1]]
    n = chain.config.source_cache_len
    assert [i for i, _ in sizes[:-1]] == [27, 27 + 50, 27 + 150]  # pushes are 0-based: token 28 is push 27
    assert sizes[0][1] == 25 * 960 - n and sizes[1][1] == 50 * 960 and sizes[2][1] == 100 * 960
    assert sum(o.shape[1] for o in out) == 200 * 960


def test_stream_push_size_does_not_matter(chain: Token2Wav) -> None:
    codes = _codes(90, seed=1)
    a = torch.cat(_stream(chain, codes, 1), dim=1)
    b = torch.cat(_stream(chain, codes, 7), dim=1)
    c = torch.cat(_stream(chain, codes, 90), dim=1)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_stream_equals_offline_away_from_the_seams(chain: Token2Wav) -> None:
    """Streaming differs from offline synthesis of the same (chunk-masked) mel only where the vocoder restarts:
    the first chunk's samples, before any seam, are the offline samples up to the receptive field's reach."""
    codes = _codes(60, seed=2)
    streamed = torch.cat(_stream(chain, codes, 5), dim=1)
    with torch.inference_mode():
        mel = chain.mel(codes, streaming=True)
        offline, _ = chain.hift.inference(mel, generator=chain.source_generator())
    assert streamed.shape == offline.shape
    head = 25 * 960 - chain.config.source_cache_len - 4 * 480  # clear of the first chunk's right edge
    assert torch.allclose(streamed[:, :head], offline[:, :head], atol=1e-4)


def test_crossfade_is_a_hamming_blend() -> None:
    w = torch.hamming_window(8, periodic=False)
    new, old = torch.ones(1, 6), torch.full((1, 5), 3.0)
    out = hamming_crossfade(new, old, w)
    assert torch.allclose(out[0, :4], w[:4] + 3 * w[4:])
    assert torch.equal(out[0, 4:], new[0, 4:])


def test_save_load_round_trip(chain: Token2Wav, tmp_path) -> None:
    chain.save_pretrained(tmp_path / "t2w")
    again = Token2Wav.from_pretrained(tmp_path / "t2w")
    codes = _codes(12, seed=3)
    assert torch.equal(chain.synthesize(codes), again.synthesize(codes))
    assert again.config == chain.config


def test_bad_inputs_are_one_line_errors(chain: Token2Wav, tmp_path) -> None:
    with pytest.raises(InputError, match="must lie in"):
        chain.synthesize(torch.tensor([[VOCAB]]))
    with pytest.raises(InputError, match="integer codes"):
        chain.synthesize(torch.zeros(1, 4))
    with pytest.raises(CheckpointError, match="not a token2wav directory"):
        Token2Wav.from_pretrained(tmp_path)


def test_fsq_tokenizer_decodes_through_its_token2wav_folder(chain: Token2Wav, tmp_path) -> None:
    """A tokenizer directory with ``token2wav/`` is a complete speech tokenizer: ``load_tokenizer`` attaches the
    chain, and decode / streaming go through it."""
    tok = FSQSpeechTokenizer(FSQTokenizerConfig(dim=32, heads=2, encoder1_layers=1, encoder2_layers=1, code_dims=4,
                                                fsmn_kernel=5))
    assert tok.codebook_size == VOCAB
    tok.save_pretrained(tmp_path / "tok")
    chain.save_pretrained(tmp_path / "tok" / "token2wav")
    loaded = load_tokenizer(tmp_path / "tok")
    codes = _codes(40, seed=4)
    assert torch.equal(loaded.decode(codes), chain.synthesize(codes))
    assert torch.equal(torch.cat(_stream(loaded.token2wav, codes, 10), dim=1),
                       torch.cat(_stream(chain, codes, 10), dim=1))
    wav = loaded.decode(codes)
    assert loaded.encode(wav).shape == codes.shape  # 24 kHz in, 25 codes per second


def test_stream_stays_close_to_offline_after_the_seams(chain: Token2Wav) -> None:
    """After a seam the vocoder restarts its source noise and phase, so the stream departs from offline synthesis
    everywhere after the first chunk, but only slightly: 32.6 dB SNR measured on this model (120 tokens, three
    chunks); the bound leaves 7 dB of margin. benchmarks/token2wav_streaming.py measures trained stacks."""
    codes = _codes(120, seed=2)
    streamed = torch.cat(_stream(chain, codes, 5), dim=1)
    offline = chain.synthesize(codes)
    snr = 10 * torch.log10(offline.pow(2).sum() / (streamed - offline).pow(2).sum())
    assert 25.0 < snr < 200.0  # close, but not identical
