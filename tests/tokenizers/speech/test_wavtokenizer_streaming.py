"""Chunked (approximate) streaming decoding of WavTokenizer against offline decoding."""

from __future__ import annotations

import pytest
import torch

from aromni.errors import ConfigError, InputError
from aromni.tokenizers.base import SpeechStreamDecoder
from aromni.tokenizers.speech.wavtokenizer import WavTokenizer, WavTokenizerConfig
from aromni.tokenizers.speech.wavtokenizer.streaming import crossfade_ramps

HOP = 8  # tiny preset



@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return WavTokenizer(WavTokenizerConfig.preset("tiny"))


@pytest.fixture(scope="module")
def codes():
    return torch.randint(0, 64, (2, 120), generator=torch.Generator().manual_seed(1))


def stream(model, codes, sizes=(1, 3, 7, 2, 5), **options):
    """Push ``codes`` in pieces of the given sizes (cycled); return the list of outputs incl. the flush."""
    dec = model.stream_decoder(batch_size=codes.shape[0], **options)
    outs, i, k = [], 0, 0
    while i < codes.shape[1]:
        n = sizes[k % len(sizes)]
        outs.append(dec.push(codes[:, i: i + n]))
        i, k = i + n, k + 1
    outs.append(dec.flush())
    return outs


def snr_db(y, ref):
    return (10 * torch.log10(ref.pow(2).sum() / (y - ref).pow(2).sum())).item()


@pytest.mark.parametrize("options", [
    dict(chunk_frames=8, left_context=0, lookahead=0, crossfade=0),
    dict(chunk_frames=5, left_context=3, lookahead=2, crossfade=9),
    dict(chunk_frames=16, left_context=16, lookahead=4, crossfade=32, crossfade_shape="equal_power"),
    dict(chunk_frames=7, left_context=200, lookahead=1),
])
@pytest.mark.parametrize("sizes", [(1,), (3, 7, 2, 5), (120,)])
def test_output_length_equals_offline(model, codes, options, sizes):
    dec = model.stream_decoder(batch_size=2, **options)
    assert isinstance(dec, SpeechStreamDecoder) and dec.exact is False
    outs = stream(model, codes, sizes, **options)
    assert torch.cat(outs, dim=1).shape == model.decode(codes).shape == (2, 120 * HOP)


def test_error_decreases_as_context_grows(model, codes):
    offline = model.decode(codes)
    ladder = [(0, 0), (2, 1), (4, 2), (8, 4), (16, 8), (32, 16)]
    snrs = [snr_db(torch.cat(stream(model, codes, chunk_frames=8, left_context=left, lookahead=la,
                                    crossfade=HOP if la else 0), 1), offline) for left, la in ladder]
    assert all(b > a + 1.0 for a, b in zip(snrs, snrs[1:])), snrs


@pytest.mark.parametrize("chunk", [1, 8, 50])
def test_context_covering_the_utterance_equals_offline(model, codes, chunk):
    y = torch.cat(stream(model, codes, chunk_frames=chunk, left_context=120, lookahead=120,
                         crossfade=min(8, chunk * HOP)), dim=1)
    torch.testing.assert_close(y, model.decode(codes), rtol=1e-5, atol=1e-5)


def test_without_context_it_concatenates_independent_chunk_decodes(model, codes):
    y = torch.cat(stream(model, codes, chunk_frames=8, left_context=0, lookahead=0, crossfade=0), dim=1)
    ref = torch.cat([model.decode(codes[:, s: s + 8]) for s in range(0, 120, 8)], dim=1)
    assert torch.equal(y, ref)


@pytest.mark.parametrize("shape", ["linear", "equal_power"])
def test_seam_is_blended_from_both_windows(model, codes, shape):
    """Chunks of 4 frames, left 2, lookahead 2, crossfade 8 samples (4 before, 4 after the boundary)."""
    c = codes[:, :8]
    a, b = model.decode(c[:, 0:6]), model.decode(c[:, 2:8])  # the two windows the decoder must use
    fade_out, fade_in = crossfade_ramps(8, shape)
    expected = torch.cat([a[:, :28], a[:, 28:36] * fade_out + b[:, 12:20] * fade_in, b[:, 20:48]], dim=1)
    dec = model.stream_decoder(batch_size=2, chunk_frames=4, left_context=2, lookahead=2, crossfade=8,
                               crossfade_shape=shape)
    first = dec.push(c)  # chunk 0 needs 4 + 2 frames: emitted now, minus the 4 held seam samples
    assert first.shape == (2, 28)
    torch.testing.assert_close(torch.cat([first, dec.flush()], dim=1), expected)


def test_emits_as_soon_as_lookahead_arrives(model, codes):
    dec = model.stream_decoder(batch_size=2, chunk_frames=4, left_context=4, lookahead=3, crossfade=8)
    assert dec.lookahead_frames == 3
    lengths = [dec.push(codes[:, i: i + 1]).shape[1] for i in range(15)]
    # chunk [0,4) is out when frame 6 arrives (4 + 3 frames), chunk [4,8) at frame 10, [8,12) at frame 14
    assert [i for i, n in enumerate(lengths) if n] == [6, 10, 14]
    assert lengths[6] == 4 * HOP - 4 and lengths[10] == lengths[14] == 4 * HOP
    assert dec.flush().shape[1] == 15 * HOP - sum(lengths)


def test_reusable_after_flush(model, codes):
    dec = model.stream_decoder(batch_size=2, chunk_frames=8, left_context=8, lookahead=4, crossfade=8)
    first = torch.cat([dec.push(codes), dec.flush()], dim=1)
    again = torch.cat([dec.push(codes), dec.flush()], dim=1)
    assert torch.equal(first, again)


def test_bad_options_and_inputs(model):
    with pytest.raises(ConfigError, match="crossfade"):
        model.stream_decoder(chunk_frames=4, left_context=0, lookahead=2, crossfade=8)  # no room before the seam
    with pytest.raises(ConfigError, match="crossfade"):
        model.stream_decoder(chunk_frames=1, left_context=4, lookahead=4, crossfade=16)  # longer than a chunk
    with pytest.raises(ConfigError, match="crossfade_shape"):
        model.stream_decoder(crossfade_shape="cosine")
    with pytest.raises(ConfigError):
        model.stream_decoder(chunk_frames=0)
    dec = model.stream_decoder(batch_size=2)
    with pytest.raises(InputError, match=r"\[2, n\]"):
        dec.push(torch.zeros(1, 3, dtype=torch.long))
