"""Streaming state, moshi style: each streaming module keeps its mutable inference state in a small dataclass.

A :class:`StreamingModule` runs offline when it has no state (``_streaming_state is None``) and incrementally when
one is installed. States are created by :func:`init_states` (one per streaming submodule, keyed by module name),
installed for the duration of a call with :func:`installed`, and are plain objects the caller owns, so several
independent streams can share one model. Offline mode is defined as streaming from a zero initial state with
everything pushed at once, which is what makes chunked output equal offline output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

StreamingStates = dict[str, Any]


class StreamingModule(nn.Module):
    """A module whose forward also works chunk by chunk, carrying its own state between calls."""

    def __init__(self) -> None:
        super().__init__()
        self._streaming_state: Any = None

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> Any:
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
