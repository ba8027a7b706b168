"""Chunked decoding equals offline decoding; audio already emitted never changes; latency = lookahead."""

from __future__ import annotations

import pytest
import torch

from aromni.errors import InputError
from aromni.tokenizers.speech.codec import CodecConfig, StreamingCodec
from aromni.tokenizers.speech.codec.data import ClipSet
from aromni.tokenizers.speech.codec.head import StreamingISTFTHead
from aromni.tokenizers.speech.codec.modules import StreamingConv1d
from aromni.tokenizers.streaming import init_states, installed
from aromni.training.recipes.codec import CodecTrainer
from aromni.training.recipes.codec_config import CodecTrainConfig

TOL = 1e-5



def _tiny(**overrides) -> StreamingCodec:
    return StreamingCodec(CodecConfig.preset("tiny", **overrides)).eval()


def _stream(codec: StreamingCodec, codes: torch.Tensor, chunk: int) -> list[torch.Tensor]:
    dec = codec.stream_decoder(codes.shape[0])
    outs = [dec.push(c) for c in codes.split(chunk, dim=1)]
    return outs + [dec.flush()]


def _speechlike(n: int, seconds: float, sr: int = 16000) -> list[torch.Tensor]:
    """Harmonic tones with gliding pitch and noise bursts: enough structure to train on for a few steps."""
    g = torch.Generator().manual_seed(1)
    t = torch.arange(int(seconds * sr)) / sr
    clips = []
    for _ in range(n):
        f0 = 90 + 160 * torch.rand(1, generator=g) + 40 * torch.sin(2 * torch.pi * 0.7 * t)
        phase = 2 * torch.pi * torch.cumsum(f0, 0) / sr
        x = sum(torch.sin(k * phase) / k for k in range(1, 6)) * 0.2
        x = x * (torch.sin(2 * torch.pi * 2.5 * t) > 0) + 0.02 * torch.randn(t.shape, generator=g)
        clips.append(x)
    return clips


@pytest.fixture(scope="module")
def trained_codec() -> StreamingCodec:
    """A tiny codec after a few optimiser steps (weights no longer at their initial scale)."""
    torch.manual_seed(0)
    cfg = CodecTrainConfig(preset="tiny", steps=6, batch_size=4, segment_frames=16, kmeans_batches=4,
                           kmeans_iters=3, warmup_steps=1, lr=3e-3, val_files=0, log_every=3)
    tr = CodecTrainer(cfg, ClipSet.from_clips(_speechlike(6, 1.5), 16000), None, None, progress=False)
    tr.kmeans_init()
    for _ in range(cfg.steps):
        tr.train_step()
    return tr.model.eval()


@pytest.mark.parametrize("weights", ["random", "trained"])
@pytest.mark.parametrize("batch", [1, 3])
def test_chunked_decode_equals_full(weights, batch, trained_codec):
    codec = _tiny() if weights == "random" else trained_codec
    codes = torch.randint(codec.codebook_size, (batch, 23), generator=torch.Generator().manual_seed(batch))
    full = codec.decode(codes)
    assert full.shape == (batch, 23 * codec.hop_length)
    assert full.abs().max() > 1e-4  # a silent decoder would make the comparison vacuous
    for chunk in range(1, codes.shape[1] + 1):
        got = torch.cat(_stream(codec, codes, chunk), dim=-1)
        assert got.shape == full.shape
        assert (got - full).abs().max() <= TOL, f"chunk {chunk}: max diff {(got - full).abs().max():.3g}"


def test_irregular_chunks_and_empty_pushes():
    codec = _tiny()
    codes = torch.randint(codec.codebook_size, (2, 17))
    dec = codec.stream_decoder(2)
    outs, start = [], 0
    for n in [0, 3, 1, 0, 5, 2, 6]:
        outs.append(dec.push(codes[:, start:start + n]))
        start += n
    outs.append(dec.flush())
    assert (torch.cat(outs, -1) - codec.decode(codes)).abs().max() <= TOL


@pytest.mark.parametrize("lookahead", [0, 1, 2])
def test_first_audio_after_lookahead_and_emitted_audio_is_final(lookahead):
    codec = _tiny(lookahead=lookahead)
    hop, n = codec.hop_length, 12
    codes = torch.randint(codec.codebook_size, (1, n))
    full = codec.decode(codes)
    dec = codec.stream_decoder()
    assert dec.exact and dec.lookahead_frames == lookahead
    emitted = []
    for i in range(n):
        out = dec.push(codes[:, i:i + 1])
        # nothing until lookahead + 1 frames are in, then exactly one frame of audio per frame pushed
        assert out.shape[-1] == (0 if i < lookahead else hop), f"push {i}"
        emitted.append(out)
        so_far = torch.cat(emitted, -1)
        # what was emitted is already the final audio: the full decode of *all* codes agrees with it
        if so_far.numel():
            assert (so_far - full[:, : so_far.shape[-1]]).abs().max() <= TOL
    tail = dec.flush()
    assert tail.shape[-1] == lookahead * hop


@pytest.mark.parametrize("lookahead", [0, 1, 2])
def test_new_codes_never_change_earlier_audio(lookahead):
    codec = _tiny(lookahead=lookahead)
    hop, k = codec.hop_length, 9
    a = torch.randint(codec.codebook_size, (1, 16), generator=torch.Generator().manual_seed(3))
    b = a.clone()
    b[:, k:] = (a[:, k:] + 1 + torch.randint(100, a[:, k:].shape)) % codec.codebook_size
    ya, yb = codec.decode(a), codec.decode(b)
    final = (k - lookahead) * hop  # samples that were emitted before code k arrived
    assert torch.equal(ya[:, :final], yb[:, :final])
    # and the change is visible right after: the decoder really does look `lookahead` frames ahead
    assert (ya[:, final:final + hop] - yb[:, final:final + hop]).abs().max() > 1e-6


def test_streaming_context_and_independent_streams():
    codec = _tiny()
    c1, c2 = torch.randint(codec.codebook_size, (2, 1, 10))
    with codec.streaming(1) as s1, codec.streaming(1) as s2:  # interleaved streams share the model, not state
        o1 = [s1.push(c1[:, :4]), s2.push(c2[:, :3]), s1.push(c1[:, 4:]), s2.push(c2[:, 3:])]
        o1 += [s1.flush(), s2.flush()]
    y1 = torch.cat([o1[0], o1[2], o1[4]], -1)
    y2 = torch.cat([o1[1], o1[3], o1[5]], -1)
    assert (y1 - codec.decode(c1)).abs().max() <= TOL and (y2 - codec.decode(c2)).abs().max() <= TOL


def test_closed_stream_and_bad_pushes_raise():
    codec = _tiny()
    dec = codec.stream_decoder(2)
    with pytest.raises(InputError):
        dec.push(torch.zeros(1, 3, dtype=torch.long))  # wrong batch
    with pytest.raises(InputError):
        dec.push(torch.full((2, 1), codec.codebook_size))  # out of range
    with dec.streaming():
        dec.push(torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(InputError, match="not streaming"):  # the streaming() block dropped the state
        dec.push(torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(InputError, match="not streaming"):
        dec.flush()


def test_streaming_conv_chunks_equal_full_and_noncausal_refuses():
    conv = StreamingConv1d(3, 5, kernel=4, dilation=2, causal=True)
    x = torch.randn(2, 3, 20)
    full = conv(x)
    states = init_states(conv, 2)
    with installed(conv, states):
        got = torch.cat([conv(c) for c in x.split([1, 4, 0, 7, 8], dim=-1)], -1)
    assert torch.allclose(got, full, atol=1e-6)
    # causality: appending input does not change earlier outputs
    assert torch.allclose(conv(torch.cat([x, torch.randn(2, 3, 5)], -1))[..., :20], full, atol=1e-6)
    with pytest.raises(RuntimeError):
        init_states(StreamingConv1d(3, 5, kernel=3, causal=False), 1)


def test_istft_head_reconstructs_analysed_signal():
    """Spectra = STFT (start-aligned Hann windows) of x -> the head's overlap-add gives x back, past the fade-in."""
    n_fft, hop = 64, 16
    head = StreamingISTFTHead(dim=4, n_fft=n_fft, hop_s=hop, subframes=1, max_log_magnitude=10.0)
    x = torch.randn(2, 40 * hop)
    padded = torch.nn.functional.pad(x, (0, n_fft))
    frames = padded.unfold(-1, n_fft, hop)[:, :40] * head.window  # [B, 40, n_fft]
    y = head.synthesize(torch.fft.rfft(frames, dim=-1))
    assert y.shape == x.shape
    assert torch.allclose(y[:, n_fft - hop:], x[:, n_fft - hop:], atol=1e-5)
    assert not torch.allclose(y[:, :hop], x[:, :hop], atol=1e-3)  # the first window fades in
