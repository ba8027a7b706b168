"""The one streaming protocol (``aromni.tokenizers.streaming``), run on every speech stream decoder.

Our codec streams exactly (chunked == full up to float rounding); WavTokenizer's chunked decoder is an
approximation by design, exact only where one decoded window covers the whole utterance.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aromni.errors import InputError
from aromni.tokenizers import base
from aromni.tokenizers.speech.codec import CodecConfig, StreamingCodec
from aromni.tokenizers.speech.wavtokenizer import WavTokenizer, WavTokenizerConfig
from aromni.tokenizers.streaming import SpeechStreamDecoder

FRAMES = 30
TOL = 1e-5  # float rounding: convolutions over different lengths sum in a different order


@pytest.fixture(scope="module")
def codec() -> StreamingCodec:
    torch.manual_seed(0)
    return StreamingCodec(CodecConfig.preset("tiny", lookahead=2)).eval()


@pytest.fixture(scope="module")
def wavtokenizer() -> WavTokenizer:
    torch.manual_seed(0)
    return WavTokenizer(WavTokenizerConfig.preset("tiny"))


@pytest.fixture(params=["codec", "wavtokenizer"])
def tokenizer(request):
    return request.getfixturevalue(request.param)


def _codes(tok, batch: int = 2, frames: int = FRAMES, seed: int = 0) -> torch.Tensor:
    return torch.randint(tok.codebook_size, (batch, frames), generator=torch.Generator().manual_seed(seed))


def _run(dec: SpeechStreamDecoder, codes: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Push ``codes`` in pieces of ``sizes`` (cycled), then flush; the whole audio ``[B, T]``."""
    outs, i, k = [], 0, 0
    while i < codes.shape[1]:
        outs.append(dec.push(codes[:, i: i + sizes[k % len(sizes)]]))
        i, k = i + sizes[k % len(sizes)], k + 1
    return torch.cat(outs + [dec.flush()], dim=1)


def test_both_decoders_follow_the_protocol(tokenizer):
    dec = tokenizer.stream_decoder(2)
    assert isinstance(dec, SpeechStreamDecoder) and base.SpeechStreamDecoder is SpeechStreamDecoder
    assert dec.is_streaming and dec.batch_size == 2  # stream_decoder() hands out a decoder already streaming
    assert dataclasses.is_dataclass(dec.state)  # one typed state object per stream
    assert dec.exact is isinstance(tokenizer, StreamingCodec)


@pytest.mark.parametrize("sizes", [(1,), (3, 7, 2, 5), (FRAMES,)])
def test_codec_chunked_equals_full(codec, sizes):
    codes = _codes(codec)
    full = codec.decode(codes)
    with codec.streaming(2) as dec:
        got = _run(dec, codes, sizes)
    assert got.shape == full.shape and full.abs().max() > 1e-4
    assert (got - full).abs().max() <= TOL


@pytest.mark.parametrize("sizes", [(1,), (4, 9), (FRAMES,)])
def test_wavtokenizer_one_window_covering_everything_equals_full(wavtokenizer, sizes):
    """One chunk with context covering the utterance decodes exactly the offline window: bit-identical."""
    codes = _codes(wavtokenizer)
    with wavtokenizer.streaming(2, chunk_frames=FRAMES, left_context=0, lookahead=0) as dec:
        assert torch.equal(_run(dec, codes, sizes), wavtokenizer.decode(codes))


@pytest.mark.parametrize("chunk", [1, 6])
def test_wavtokenizer_full_context_matches_full_to_float_rounding(wavtokenizer, chunk):
    """Overlapping windows that all cover the utterance crossfade into the offline decode (linear ramps sum to 1)."""
    codes = _codes(wavtokenizer)
    with wavtokenizer.streaming(2, chunk_frames=chunk, left_context=FRAMES, lookahead=FRAMES,
                                crossfade=min(8, chunk * wavtokenizer.hop_length)) as dec:
        got = _run(dec, codes, (1, 3))
    torch.testing.assert_close(got, wavtokenizer.decode(codes), rtol=1e-5, atol=1e-5)


def test_wavtokenizer_short_context_is_only_an_approximation(wavtokenizer):
    codes = _codes(wavtokenizer)
    with wavtokenizer.streaming(2, chunk_frames=4, left_context=2, lookahead=1) as dec:
        got = _run(dec, codes, (1,))
    full = wavtokenizer.decode(codes)
    assert got.shape == full.shape
    assert (got - full).abs().max() > 1e-4  # global attention/GroupNorm: no finite context is exact


def test_flush_resets_and_reset_streaming_forgets(tokenizer):
    codes, other = _codes(tokenizer), _codes(tokenizer, seed=1)
    dec = tokenizer.stream_decoder(2)
    first = _run(dec, codes, (5,))
    assert torch.equal(_run(dec, codes, (5,)), first)  # flush() left a fresh utterance behind
    dec.push(other[:, :11])
    dec.reset_streaming()  # drop the half-pushed utterance
    assert torch.equal(_run(dec, codes, (5,)), first)


def test_streaming_block_drops_the_state_and_can_change_batch(tokenizer):
    dec = tokenizer.stream_decoder(2)
    codes = _codes(tokenizer, batch=3)
    with dec.streaming(3) as same:
        assert same is dec and dec.batch_size == 3
        got = _run(dec, codes, (7,))
    assert got.shape == (3, FRAMES * tokenizer.hop_length)
    assert not dec.is_streaming
    for call in (lambda: dec.push(codes), dec.flush, dec.reset_streaming):
        with pytest.raises(InputError, match="not streaming"):
            call()


def test_interleaved_streams_share_the_model_not_the_state(tokenizer):
    a, b = _codes(tokenizer, seed=2), _codes(tokenizer, seed=3)
    alone_a, alone_b = _run(tokenizer.stream_decoder(2), a, (4,)), _run(tokenizer.stream_decoder(2), b, (4,))
    with tokenizer.streaming(2) as da, tokenizer.streaming(2) as db:
        outs_a, outs_b = [], []
        for i in range(0, FRAMES, 4):
            outs_a.append(da.push(a[:, i: i + 4]))
            outs_b.append(db.push(b[:, i: i + 4]))
        outs_a.append(da.flush())
        outs_b.append(db.flush())
    assert torch.equal(torch.cat(outs_a, 1), alone_a) and torch.equal(torch.cat(outs_b, 1), alone_b)


def test_bad_pushes_raise_one_input_error(tokenizer):
    dec = tokenizer.stream_decoder(2)
    for bad in (torch.zeros(1, 3, dtype=torch.long), torch.zeros(2, 3), torch.zeros(2, 3, 1, dtype=torch.long)):
        with pytest.raises(InputError, match=r"\[2, n\]"):
            dec.push(bad)
    with pytest.raises(InputError):
        tokenizer.stream_decoder(0)
