"""Streaming speech: playable audio chunks while the speech tokens are still being generated.

:class:`SpeechStreamer` wraps a :class:`~aromni.inference.engine.GenerationStream`. Each row gets its own
:class:`~aromni.tokenizers.base.SpeechStreamDecoder`; speech codes are pushed to it in chunks (the first one small,
``first_chunk_frames``, then ``chunk_frames``) and every sample the decoder declares final is yielded as an
:class:`AudioChunk`. A speech span that ends (``<eoa>`` or any non-speech token) flushes its decoder, so a reply
with several speech segments streams each one. With our codec the chunks concatenate to exactly the offline
decode; with WavTokenizer they are its measured chunked approximation (``SpeechStreamDecoder.exact``).

Latency figures (:class:`StreamMetrics`, seconds from ``t_start``, the moment the request was made):

* ``first_speech_token``: the first speech code after ``<boa>`` reached the host;
* ``ftl``: first-token latency as the AR-Omni paper defines it (§4.3), the time of the first speech token that
  can be decoded at once, i.e. the code ``lookahead_frames`` after the first (the codec needs that many future
  frames before the first samples are final; 0 lookahead makes it the first code);
* ``first_audio``: the first non-empty audio chunk left the speech decoder (includes the chunking wait and the
  decoder's compute);
* ``rtf``: total synthesis time (request to last sample) / duration of the audio.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass

import torch

from aromni.errors import ConfigError
from aromni.inference.engine import NO_TOKEN, GenerationStream, Step
from aromni.tokenizers.base import SpeechTokenizer
from aromni.utils.io import JSONValue
from aromni.vocab.layout import VocabLayout


@dataclass
class AudioChunk:
    """``audio [n]`` float32 (CPU) of row ``row``'s speech segment ``segment``, starting at ``start`` samples
    into that segment; ``final`` on the last chunk of the segment."""

    row: int
    segment: int
    audio: torch.Tensor
    start: int
    final: bool
    time: float


@dataclass
class StreamMetrics:
    """Latency of one row (seconds from the request; ``None`` when the event did not happen)."""

    sample_rate: int
    lookahead_frames: int
    first_speech_token: float | None = None
    ftl: float | None = None
    first_audio: float | None = None
    total: float | None = None
    audio_seconds: float = 0.0
    speech_codes: int = 0
    tokens: int = 0

    @property
    def rtf(self) -> float | None:
        return None if self.total is None or self.audio_seconds <= 0 else self.total / self.audio_seconds

    def to_dict(self) -> dict[str, JSONValue]:
        d = asdict(self)
        d["rtf"] = self.rtf
        return d


class _Row:
    def __init__(self, tokenizer: SpeechTokenizer, options: Mapping[str, object], metrics: StreamMetrics):
        self.tokenizer, self.options, self.metrics = tokenizer, options, metrics
        self.decoder = None
        self.pending: list[int] = []
        self.segment, self.emitted, self.pushed_chunks = -1, 0, 0


class SpeechStreamer:
    """Iterate :class:`AudioChunk` s while ``stream`` generates.

    Args:
        stream: a generation (not yet iterated).
        speech_tokenizer: the codec (its ``stream_decoder`` does the decoding).
        layout: vocabulary layout.
        first_chunk_frames: codes pushed for the first chunk of a segment (small: low latency).
        chunk_frames: codes pushed per later chunk.
        t_start: ``time.perf_counter()`` of the request (default: now).
        decoder_options: passed to ``speech_tokenizer.stream_decoder``.
    """

    def __init__(self, stream: GenerationStream, speech_tokenizer: SpeechTokenizer, layout: VocabLayout, *,
                 first_chunk_frames: int = 4, chunk_frames: int = 20, t_start: float | None = None,
                 decoder_options: Mapping[str, object] | None = None):
        for name, v in (("first_chunk_frames", first_chunk_frames), ("chunk_frames", chunk_frames)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ConfigError(f"{name} must be an integer number of code frames, got {v!r}")
        if first_chunk_frames < 1 or chunk_frames < 1:
            raise ConfigError(f"chunk sizes must be >= 1 frame, got {first_chunk_frames} and {chunk_frames}")
        if decoder_options is not None and not isinstance(decoder_options, Mapping):
            raise ConfigError(f"decoder_options must be a mapping, got {type(decoder_options).__name__}")
        self.stream, self.tokenizer, self.layout = stream, speech_tokenizer, layout
        self.first_chunk_frames, self.chunk_frames = first_chunk_frames, chunk_frames
        self.t_start = time.perf_counter() if t_start is None else t_start
        probe = speech_tokenizer.stream_decoder(1, **(decoder_options or {}))
        self.exact, lookahead = bool(probe.exact), int(probe.lookahead_frames)
        self.metrics = [StreamMetrics(speech_tokenizer.sample_rate, lookahead) for _ in stream.results]
        self._rows = [_Row(speech_tokenizer, decoder_options or {}, m) for m in self.metrics]

    def __iter__(self) -> Iterator[AudioChunk]:
        for step in self.stream:
            yield from self.feed(step)
        yield from self.finish()

    def feed(self, step: Step) -> list[AudioChunk]:
        """Process one engine step (for callers that iterate the stream themselves)."""
        out: list[AudioChunk] = []
        for row, tok in enumerate(step.tokens):
            if tok != NO_TOKEN:
                out += self._on_token(row, tok, step.time)
        return out

    def finish(self) -> list[AudioChunk]:
        """Flush every open segment once the generation has ended; records the total time."""
        out: list[AudioChunk] = []
        for row in range(len(self._rows)):
            out += self._end_segment(row)
        now = time.perf_counter()
        for m in self.metrics:
            m.total = now - self.t_start
        return out

    def _on_token(self, row: int, tok: int, t: float) -> list[AudioChunk]:
        r, m = self._rows[row], self.metrics[row]
        m.tokens += 1
        if bool(self.layout.speech.contains(tok)):
            if r.decoder is None:
                r.decoder = self.tokenizer.stream_decoder(1, **r.options)
                r.segment, r.emitted, r.pushed_chunks = r.segment + 1, 0, 0
            r.pending.append(int(self.layout.speech.to_codes(tok)))
            m.speech_codes += 1
            if m.first_speech_token is None:
                m.first_speech_token = t - self.t_start
            if m.ftl is None and m.speech_codes > m.lookahead_frames:
                m.ftl = t - self.t_start
            want = self.first_chunk_frames if r.pushed_chunks == 0 else self.chunk_frames
            if len(r.pending) >= want:
                return self._push(row, final=False)
        elif r.decoder is not None:
            return self._end_segment(row)
        return []

    def _push(self, row: int, final: bool) -> list[AudioChunk]:
        r, m = self._rows[row], self.metrics[row]
        with torch.no_grad():
            audio = torch.zeros(1, 0)
            if r.pending:
                codes = torch.tensor([r.pending], dtype=torch.long, device=_device(self.tokenizer))
                audio = r.decoder.push(codes)
                r.pending, r.pushed_chunks = [], r.pushed_chunks + 1
            if final:
                audio = torch.cat([audio.float().cpu(), r.decoder.flush().float().cpu()], dim=-1)
        audio = audio[0].float().cpu()
        now = time.perf_counter()
        if not (audio.numel() or final):
            return []
        if audio.numel() and m.first_audio is None:
            m.first_audio = now - self.t_start
        m.audio_seconds += audio.numel() / self.tokenizer.sample_rate
        chunk = AudioChunk(row, r.segment, audio, r.emitted, final, now)
        r.emitted += audio.numel()
        return [chunk]

    def _end_segment(self, row: int) -> list[AudioChunk]:
        r = self._rows[row]
        if r.decoder is None:
            return []
        out = self._push(row, final=True)
        r.decoder = None
        return out


def _device(tokenizer: SpeechTokenizer) -> torch.device:
    p = next(tokenizer.parameters(), None) if hasattr(tokenizer, "parameters") else None
    return p.device if p is not None else torch.device("cpu")


def collect_audio(chunks: Iterator[AudioChunk], n_rows: int = 1) -> list[list[torch.Tensor]]:
    """Concatenate streamed chunks into ``[row][segment] -> waveform``."""
    out: list[dict[int, list[torch.Tensor]]] = [{} for _ in range(n_rows)]
    for c in chunks:
        out[c.row].setdefault(c.segment, []).append(c.audio)
    return [[torch.cat(v) if v else torch.zeros(0) for _, v in sorted(d.items())] for d in out]
