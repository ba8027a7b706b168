"""The one streaming protocol of the tokenizers, after moshi's ``StreamingModule`` (``moshi/modules/streaming.py``).

Every piece of mutable inference state lives in a typed dataclass, created at the start of a stream and dropped
at its end. Two levels use it:

* **Layers** (:class:`StreamingModule`): a module runs offline when no state is installed and chunk by chunk when
  one is. :func:`init_states` creates one state per streaming layer of a network (keyed by module name) and
  :func:`installed` installs them for one call, so the states belong to the caller and several streams can share
  one model. Offline mode equals streaming from the initial state with everything pushed at once.
* **Stream decoders** (:class:`SpeechStreamDecoder`): ``codes -> audio`` for one stream of ``batch_size`` rows,
  holding one state object. ``with dec.streaming(batch_size):`` creates the state and drops it on exit,
  :meth:`~SpeechStreamDecoder.reset_streaming` starts a new utterance, ``push(codes [B, n]) -> audio [B, m]``
  is one step and ``flush() -> audio [B, r]`` ends the utterance (and resets). A decoder made by
  ``SpeechTokenizer.stream_decoder()`` is already streaming.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from typing import Generic, TypeVar

import torch
from torch import nn

from aromni.errors import InputError

State = TypeVar("State")
#: ``{module name: its state}`` for every :class:`StreamingModule` of a network.
StreamingStates = dict[str, object]


class StreamingModule(nn.Module, Generic[State]):
    """A layer whose forward also works chunk by chunk, carrying its own ``State`` between calls."""

    def __init__(self) -> None:
        super().__init__()
        self._streaming_state: State | None = None

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> State:
        """The state at the start of a stream (must equal the implicit offline left padding)."""
        raise NotImplementedError

    @property
    def is_streaming(self) -> bool:
        return self._streaming_state is not None


def init_states(root: nn.Module, batch_size: int) -> StreamingStates:
    """Fresh states for every :class:`StreamingModule` under ``root`` (on the module's device/dtype)."""
    p = next(root.parameters())
    return {name: m.init_state(batch_size, p.device, p.dtype)
            for name, m in root.named_modules() if isinstance(m, StreamingModule)}


@contextlib.contextmanager
def installed(root: nn.Module, states: StreamingStates) -> Iterator[None]:
    """Install ``states`` into ``root``'s streaming modules for the block; modules mutate them in place."""
    modules = dict(root.named_modules())
    try:
        for name, state in states.items():
            modules[name]._streaming_state = state
        yield
    finally:
        for name in states:
            modules[name]._streaming_state = None


class SpeechStreamDecoder(abc.ABC, Generic[State]):
    """Incremental speech decoding: codes pushed a few frames at a time -> audio chunks.

    ``push(codes [B, n]) -> audio [B, m]`` returns every sample that is final given the codes so far;
    ``flush() -> audio [B, r]`` returns the rest once no more codes will come, then resets for the next utterance.
    Concatenating all outputs of an utterance gives its whole audio. :attr:`exact` says whether that equals the
    offline ``SpeechTokenizer.decode``.

    Subclasses implement :meth:`init_state`, :meth:`step` and :meth:`finish` on their typed ``State``.
    """

    #: True when chunked output equals offline decoding (our codec); False for approximations (WavTokenizer).
    exact: bool = False
    #: Codes of lookahead needed before the first samples of a frame are final.
    lookahead_frames: int = 0

    def __init__(self, batch_size: int = 1) -> None:
        """Starts streaming with ``batch_size`` rows (as moshi's ``streaming_forever``)."""
        self._state: State | None = None
        self.batch_size = batch_size
        self.start_streaming(batch_size)

    # --- to implement ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def init_state(self, batch_size: int) -> State:
        """The state at the start of an utterance."""

    @abc.abstractmethod
    def step(self, codes: torch.Tensor, state: State) -> torch.Tensor:
        """Integer codes ``[B, n]`` (shape checked) -> the audio ``[B, m]`` that became final; mutates ``state``."""

    @abc.abstractmethod
    def finish(self, state: State) -> torch.Tensor:
        """The remaining audio ``[B, r]`` once no more codes will come."""

    # --- the protocol ------------------------------------------------------------------------------------------
    @property
    def is_streaming(self) -> bool:
        return self._state is not None

    @property
    def state(self) -> State:
        if self._state is None:
            raise InputError("this stream decoder is not streaming (its streaming() block has ended)",
                             "use it inside `with decoder.streaming(batch_size):` or make a new stream_decoder()")
        return self._state

    def start_streaming(self, batch_size: int) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self._state = self.init_state(batch_size)

    def stop_streaming(self) -> None:
        """Drop the state; :meth:`push` raises until streaming starts again."""
        self._state = None

    @contextlib.contextmanager
    def streaming(self, batch_size: int | None = None) -> Iterator[SpeechStreamDecoder[State]]:
        """``with dec.streaming(B): dec.push(codes)``: a fresh state for the block, dropped on exit."""
        self.start_streaming(self.batch_size if batch_size is None else batch_size)
        try:
            yield self
        finally:
            self.stop_streaming()

    def reset_streaming(self) -> None:
        """Forget the current utterance; the next push starts a new one (same batch size)."""
        self.state  # noqa: B018 - raises when not streaming
        self._state = self.init_state(self.batch_size)

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, n]`` -> the audio ``[B, m]`` that became final (``m`` may be 0)."""
        state = self.state
        if codes.dim() != 2 or codes.shape[0] != self.batch_size or codes.dtype.is_floating_point \
                or codes.dtype == torch.bool:
            raise InputError(f"stream decoder expects integer codes [{self.batch_size}, n], got {codes.dtype} "
                             f"{tuple(codes.shape)}")
        return self.step(codes, state)

    def flush(self) -> torch.Tensor:
        """The rest of the utterance's audio ``[B, r]``; then the decoder is reset for the next utterance."""
        out = self.finish(self.state)
        self.reset_streaming()
        return out

    def stream(self, chunks: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Decode an iterator of code chunks ``[B, n_i]`` (one utterance) into an iterator of audio chunks."""
        for c in chunks:
            out = self.push(c)
            if out.shape[-1]:
                yield out
        tail = self.flush()
        if tail.shape[-1]:
            yield tail
