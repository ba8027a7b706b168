"""Approximate streaming for WavTokenizer: decode overlapping windows, keep each chunk, crossfade at the seams.

WavTokenizer's decoder has a global receptive field (pos_net GroupNorm statistics and self-attention span the
whole sequence), so no finite lookahead reproduces offline decoding exactly. This decoder trades a little
accuracy for latency: frames are cut into chunks of ``chunk_frames``; chunk ``[s, e)`` is decoded offline from
the window ``[s - left_context, e + lookahead)`` (clipped to the codes received) as soon as its lookahead has
arrived, and only its own samples are kept. Adjacent chunks are blended over ``crossfade`` samples centred on
their boundary (half before it, covered by the next chunk's left context; half after it, covered by this
chunk's lookahead). With a linear crossfade, identical overlapping decodes blend to themselves, so context that
covers the whole utterance reproduces offline decoding. The error for other settings is measured by
``benchmarks/wavtokenizer_chunking.py`` (``docs/wavtokenizer.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from aromni.errors import ConfigError
from aromni.tokenizers.streaming import SpeechStreamDecoder

CROSSFADE_SHAPES = ("linear", "equal_power")


def crossfade_ramps(n: int, shape: str, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fade_out, fade_in)`` of length ``n``, sampled at bin centres so neither weight is exactly 0 or 1.

    ``linear`` weights sum to 1 (right for two estimates of the same signal, as here); ``equal_power`` weights'
    squares sum to 1 (right for uncorrelated signals; it boosts correlated ones by up to 3 dB mid-fade).
    """
    t = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / max(n, 1)
    if shape == "linear":
        return 1.0 - t, t
    return torch.cos(0.5 * math.pi * t), torch.sin(0.5 * math.pi * t)


@dataclass
class ChunkedStreamState:
    """One utterance's state: the codes still needed as context, and the held seam of the last chunk."""

    codes: torch.Tensor  # [B, n] codes from absolute frame `base` on (older ones are never decoded again)
    base: int = 0  # absolute frame index of codes[:, 0]
    next: int = 0  # absolute frame index where the next chunk starts
    held: torch.Tensor | None = None  # previous chunk's decode of the crossfade region after its boundary

    @property
    def frames_received(self) -> int:
        return self.base + self.codes.shape[1]


class ChunkedStreamDecoder(SpeechStreamDecoder[ChunkedStreamState]):
    """Approximate streaming over any offline decoder: ``push(codes [B, n]) -> audio [B, m]``; ``flush() ->
    audio [B, r]``; total length = offline length.

    Args:
        decode: the offline decoder run on each window, ``codes [B, F] -> audio [B, F * hop_length]``
            (:meth:`WavTokenizer.stream_decoder` passes its ``decode`` with the chosen ``bandwidth_id``).
        hop_length: samples per code frame.
        batch_size: rows ``B`` of every pushed code tensor.
        chunk_frames: frames kept from each decoded window (emission granularity).
        left_context: already-emitted frames re-decoded before each chunk.
        lookahead: future frames required (and decoded) after a chunk before it is emitted.
        crossfade: samples blended across each chunk boundary; at most ``chunk_frames * hop``, its first half
            at most ``left_context * hop`` and its second half at most ``lookahead * hop``. Default: one hop,
            or 0 without left context or lookahead.
        crossfade_shape: ``"linear"`` (default) or ``"equal_power"``.
        device: where codes are kept (the decoder's device).

    After :meth:`flush` the decoder is reset and can take the next utterance.
    """

    exact = False

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor], hop_length: int, batch_size: int = 1,
                 chunk_frames: int = 20, left_context: int = 40, lookahead: int = 10, crossfade: int | None = None,
                 crossfade_shape: str = "linear", device: torch.device | str = "cpu"):
        hop = hop_length
        crossfade = min(hop, lookahead * hop, left_context * hop) if crossfade is None else crossfade
        if chunk_frames < 1 or left_context < 0 or lookahead < 0 or crossfade < 0:
            raise ConfigError(f"stream decoder: need chunk_frames >= 1 and non-negative left_context/lookahead/"
                              f"crossfade, got {chunk_frames}, {left_context}, {lookahead}, {crossfade}")
        if crossfade_shape not in CROSSFADE_SHAPES:
            raise ConfigError(f"stream decoder: crossfade_shape {crossfade_shape!r}", f"one of {CROSSFADE_SHAPES}")
        self.before, self.after = crossfade // 2, crossfade - crossfade // 2
        if crossfade > chunk_frames * hop or self.before > left_context * hop or self.after > lookahead * hop:
            raise ConfigError(f"stream decoder: crossfade {crossfade} samples does not fit (chunk "
                              f"{chunk_frames * hop}, left context {left_context * hop}, lookahead "
                              f"{lookahead * hop} samples)",
                              "half the crossfade must fit in the left context and half in the lookahead")
        self.decode, self.hop, self.device = decode, hop, torch.device(device)
        self.chunk_frames, self.left_context, self.lookahead_frames = chunk_frames, left_context, lookahead
        self.crossfade, self.crossfade_shape = crossfade, crossfade_shape
        super().__init__(batch_size)  # checks batch_size, starts streaming

    def init_state(self, batch_size: int) -> ChunkedStreamState:
        return ChunkedStreamState(torch.zeros(batch_size, 0, dtype=torch.long, device=self.device))

    def step(self, codes: torch.Tensor, state: ChunkedStreamState) -> torch.Tensor:
        """Add codes ``[B, n]``; return every chunk whose lookahead is now available (``[B, m]``, maybe m=0)."""
        state.codes = torch.cat([state.codes, codes.to(state.codes.device, torch.long)], dim=1)
        out = []
        while state.frames_received >= state.next + self.chunk_frames + self.lookahead_frames:
            out.append(self._emit(state, state.next, state.next + self.chunk_frames, last=False))
        keep_from = max(0, state.next - self.left_context)  # older frames are never decoded again
        state.codes, state.base = state.codes[:, keep_from - state.base:], keep_from
        return self._cat(out)

    def finish(self, state: ChunkedStreamState) -> torch.Tensor:
        """Decode the remaining frames (the tail has no lookahead); returns ``[B, r]``."""
        out, total = [], state.frames_received
        while state.next < total:
            end = min(state.next + self.chunk_frames, total)
            out.append(self._emit(state, state.next, end, last=end == total))
        return self._cat(out)

    def _cat(self, pieces: list[torch.Tensor]) -> torch.Tensor:
        if not pieces:
            return torch.zeros(self.batch_size, 0, device=self.device)
        return torch.cat(pieces, dim=1)

    def _emit(self, state: ChunkedStreamState, start: int, end: int, *, last: bool) -> torch.Tensor:
        """Decode chunk frames ``[start, end)`` with context; return its final samples (held seam included)."""
        hop = self.hop
        win_start = max(0, start - self.left_context)
        win_end = min(state.frames_received, end + self.lookahead_frames)
        audio = self.decode(state.codes[:, win_start - state.base: win_end - state.base])  # [B, (end-start)*hop]
        offset = win_start * hop
        first = start * hop - (self.before if state.held is not None else 0)
        stop = end * hop if last else end * hop - self.before
        piece = audio[:, first - offset: stop - offset].clone()
        if state.held is not None and state.held.shape[1]:
            n = state.held.shape[1]
            fade_out, fade_in = crossfade_ramps(n, self.crossfade_shape, piece.device)
            piece[:, :n] = state.held * fade_out + piece[:, :n] * fade_in
        if not last:
            state.held = audio[:, stop - offset: min(end * hop + self.after, win_end * hop) - offset].clone()
        state.next = end
        return piece
