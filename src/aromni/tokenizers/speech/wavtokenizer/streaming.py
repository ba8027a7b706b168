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
from typing import TYPE_CHECKING

import torch

from aromni.errors import ConfigError, InputError
from aromni.tokenizers.base import SpeechStreamDecoder

if TYPE_CHECKING:
    from aromni.tokenizers.speech.wavtokenizer.model import WavTokenizer

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


class ChunkedStreamDecoder(SpeechStreamDecoder):
    """``push(codes [B, n]) -> audio [B, m]``; ``flush() -> audio [B, r]``; total length = offline length.

    Args:
        model: the :class:`WavTokenizer` whose ``decode`` runs each window.
        batch_size: rows ``B`` of every pushed code tensor.
        chunk_frames: frames kept from each decoded window (emission granularity).
        left_context: already-emitted frames re-decoded before each chunk.
        lookahead: future frames required (and decoded) after a chunk before it is emitted.
        crossfade: samples blended across each chunk boundary; at most ``chunk_frames * hop``, its first half
            at most ``left_context * hop`` and its second half at most ``lookahead * hop``. Default: one hop,
            or 0 without left context or lookahead.
        crossfade_shape: ``"linear"`` (default) or ``"equal_power"``.
        bandwidth_id: AdaLayerNorm row used for decoding (AR-Omni uses 0).

    After :meth:`flush` the decoder is reset and can take the next utterance.
    """

    exact = False

    def __init__(self, model: WavTokenizer, batch_size: int = 1, chunk_frames: int = 20, left_context: int = 40,
                 lookahead: int = 10, crossfade: int | None = None, crossfade_shape: str = "linear",
                 bandwidth_id: int = 0):
        hop = model.hop_length
        crossfade = min(hop, lookahead * hop, left_context * hop) if crossfade is None else crossfade
        if batch_size < 1 or chunk_frames < 1 or left_context < 0 or lookahead < 0 or crossfade < 0:
            raise ConfigError(f"stream decoder: need batch_size >= 1, chunk_frames >= 1 and non-negative "
                              f"left_context/lookahead/crossfade, got {batch_size}, {chunk_frames}, "
                              f"{left_context}, {lookahead}, {crossfade}")
        if crossfade_shape not in CROSSFADE_SHAPES:
            raise ConfigError(f"stream decoder: crossfade_shape {crossfade_shape!r}", f"one of {CROSSFADE_SHAPES}")
        self.before, self.after = crossfade // 2, crossfade - crossfade // 2
        if crossfade > chunk_frames * hop or self.before > left_context * hop or self.after > lookahead * hop:
            raise ConfigError(f"stream decoder: crossfade {crossfade} samples does not fit (chunk "
                              f"{chunk_frames * hop}, left context {left_context * hop}, lookahead "
                              f"{lookahead * hop} samples)",
                              "half the crossfade must fit in the left context and half in the lookahead")
        self.model, self.batch_size, self.hop = model, batch_size, hop
        self.chunk_frames, self.left_context, self.lookahead_frames = chunk_frames, left_context, lookahead
        self.crossfade, self.crossfade_shape, self.bandwidth_id = crossfade, crossfade_shape, bandwidth_id
        self.reset()

    def reset(self) -> None:
        """Forget all codes; the next push starts a new utterance."""
        self._codes = torch.zeros(self.batch_size, 0, dtype=torch.long, device=self.model.quantizer.embed.device)
        self._base = 0  # absolute frame index of self._codes[:, 0]
        self._next = 0  # absolute frame index where the next chunk starts
        self._held: torch.Tensor | None = None  # previous chunk's decode of the crossfade region

    @property
    def frames_received(self) -> int:
        return self._base + self._codes.shape[1]

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Add codes ``[B, n]``; return every chunk whose lookahead is now available (``[B, m]``, maybe m=0)."""
        if codes.dim() != 2 or codes.shape[0] != self.batch_size or codes.dtype.is_floating_point:
            raise InputError(f"stream decoder expects integer codes [{self.batch_size}, n], got {codes.dtype} "
                             f"{tuple(codes.shape)}")
        self._codes = torch.cat([self._codes, codes.to(self._codes.device, torch.long)], dim=1)
        out = []
        while self.frames_received >= self._next + self.chunk_frames + self.lookahead_frames:
            out.append(self._emit(self._next, self._next + self.chunk_frames, last=False))
        keep_from = max(0, self._next - self.left_context)  # older frames are never decoded again
        self._codes, self._base = self._codes[:, keep_from - self._base:], keep_from
        return self._cat(out)

    def flush(self) -> torch.Tensor:
        """Decode the remaining frames (the tail has no lookahead) and reset; returns ``[B, r]``."""
        out, total = [], self.frames_received
        while self._next < total:
            end = min(self._next + self.chunk_frames, total)
            out.append(self._emit(self._next, end, last=end == total))
        self.reset()
        return self._cat(out)

    def _cat(self, pieces: list[torch.Tensor]) -> torch.Tensor:
        if not pieces:
            return torch.zeros(self.batch_size, 0, device=self._codes.device)
        return torch.cat(pieces, dim=1)

    def _emit(self, start: int, end: int, *, last: bool) -> torch.Tensor:
        """Decode chunk frames ``[start, end)`` with context; return its final samples (held seam included)."""
        hop = self.hop
        win_start = max(0, start - self.left_context)
        win_end = min(self.frames_received, end + self.lookahead_frames)
        codes = self._codes[:, win_start - self._base: win_end - self._base]
        audio = self.model.decode(codes, bandwidth_id=self.bandwidth_id)  # [B, (win_end - win_start) * hop]
        offset = win_start * hop
        first = start * hop - (self.before if self._held is not None else 0)
        stop = end * hop if last else end * hop - self.before
        piece = audio[:, first - offset: stop - offset].clone()
        if self._held is not None and self._held.shape[1]:
            n = self._held.shape[1]
            fade_out, fade_in = crossfade_ramps(n, self.crossfade_shape, piece.device)
            piece[:, :n] = self._held * fade_out + piece[:, :n] * fade_in
        if not last:
            self._held = audio[:, stop - offset: min(end * hop + self.after, win_end * hop) - offset].clone()
        self._next = end
        return piece
