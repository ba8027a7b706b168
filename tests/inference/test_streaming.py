"""Streaming speech: with our exactly-streaming codec the streamed chunks equal the offline decode, per row and
per speech segment; latency figures are ordered and consistent."""

import pytest
import torch
from tinyparts import biased

from aromni.bundle import Bundle
from aromni.inference.omni import OmniModel
from aromni.inference.streaming import SpeechStreamer, collect_audio


@pytest.fixture(scope="module")
def speech_model(tiny_parts):
    text, layout, image, speech = tiny_parts
    # A random decoder nudged to open speech spans right away and close them now and then.
    decoder = biased(layout, {"boa": 12.0, "speech": 6.0, "eoa": 3.0, "eos": -5.0}, seed=4)
    return OmniModel(Bundle(decoder=decoder, layout=layout, text=text, image=image, speech=speech))


def speech_spans(layout, tokens):
    spans, cur = [], None
    for t in tokens:
        if layout.speech.contains(t):
            cur = (cur or []) + [int(layout.speech.to_codes(t))]
        elif cur is not None:
            spans.append(cur)
            cur = None
    return spans + ([cur] if cur else [])


def offline(model, codes):
    with torch.no_grad():
        return model.speech.decode(torch.tensor([codes]))[0]


def test_streamed_tts_equals_offline_decode(speech_model):
    m = speech_model
    stream = m.tts("hello world", stream=True, max_new_tokens=30, first_chunk_frames=3, chunk_frames=5)
    chunks = list(stream)
    assert stream.exact and len(chunks) >= 3
    assert chunks[0].audio.numel() == (3 - m.speech.lookahead_frames) * m.speech.hop_length  # small first chunk
    spans = speech_spans(m.layout, stream.results[0].tokens)
    audio = collect_audio(iter(chunks))[0]
    assert len(audio) == len(spans) >= 1
    for got, codes in zip(audio, spans):
        assert torch.allclose(got, offline(m, codes), atol=1e-6)
    finals = [c for c in chunks if c.final]
    assert len(finals) == len(spans)


def test_latency_metrics_are_ordered(speech_model):
    stream = speech_model.tts("hello", stream=True, max_new_tokens=20)
    for _ in stream:
        pass
    mt = stream.metrics[0]
    assert 0 < mt.first_speech_token <= mt.ftl <= mt.first_audio <= mt.total
    assert mt.audio_seconds > 0 and mt.rtf == pytest.approx(mt.total / mt.audio_seconds)
    assert mt.tokens == len(stream.results[0].tokens)


def test_offline_tts_equals_the_streamed_audio(speech_model):
    m = speech_model
    out = m.tts("hello world", max_new_tokens=15)
    streamed = torch.cat([c.audio for c in m.tts("hello world", stream=True, max_new_tokens=15)])
    # offline TTS decodes all speech codes at once (as the official runner); with one span it equals the stream
    if len(speech_spans(m.layout, out.tokens)) == 1:
        assert torch.allclose(out.audio, streamed, atol=1e-6)
    assert out.codes == [c for s in speech_spans(m.layout, out.tokens) for c in s]


def test_batched_rows_stream_independently(speech_model):
    m = speech_model
    prompts = [m._task_prompt("tts", text=t) for t in ("hello", "a big red circle at the top")]
    gen = m.engine.generate(prompts, m.options("tts", {"max_new_tokens": 12}))
    chunks = list(SpeechStreamer(gen, m.speech, m.layout, first_chunk_frames=2, chunk_frames=4))
    audio = collect_audio(iter(chunks), n_rows=2)
    for row in range(2):
        spans = speech_spans(m.layout, gen.results[row].tokens)
        assert len(audio[row]) == len(spans)
        for got, codes in zip(audio[row], spans):
            assert torch.allclose(got, offline(m, codes), atol=1e-6)


def test_wavtokenizer_streams_its_approximation(tiny_parts):
    from aromni.tokenizers.speech.wavtokenizer import WavTokenizer, WavTokenizerConfig

    text, layout, image, _ = tiny_parts
    torch.manual_seed(0)
    wt = WavTokenizer(WavTokenizerConfig.preset("tiny"))  # 64 codes, like the tiny layout
    m = OmniModel(Bundle(decoder=biased(layout, {"boa": 12.0, "speech": 6.0, "eoa": -9.0, "eos": -9.0}, seed=4),
                         layout=layout, text=text, image=image, speech=wt))
    stream = m.tts("hello", stream=True, max_new_tokens=40, first_chunk_frames=2, chunk_frames=4,
                   decoder_options={"chunk_frames": 8, "lookahead": 4})
    chunks = list(stream)
    assert not stream.exact and stream.metrics[0].lookahead_frames == 4
    codes = speech_spans(layout, stream.results[0].tokens)[0]
    audio = torch.cat([c.audio for c in chunks])
    assert audio.numel() == offline(m, codes).numel() and len(chunks) > 2
    mt = stream.metrics[0]
    assert mt.ftl >= mt.first_speech_token  # FTL waits for the decoder's 4-frame lookahead
