"""Server-sent events: ``data: <json>\\n\\n`` frames, and a streaming response that always cleans up.

:class:`EventStream` is a :class:`~starlette.responses.StreamingResponse` whose cleanup is guaranteed: when the
response ends for any reason (done, client gone, server shutting down) its event generator is closed (so its
``finally`` runs now, not whenever the garbage collector gets to it) and then ``on_close`` is called, which
cancels the request's generations and frees its slot.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from aromni.utils.io import JSONValue

#: The frame that ends an OpenAI chat stream.
DONE = b"data: [DONE]\n\n"


def sse(payload: JSONValue) -> bytes:
    """One event frame: ``data: {...}\\n\\n`` (compact JSON, UTF-8)."""
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


class EventStream(StreamingResponse):
    """``text/event-stream`` of ``events``; ``on_close()`` runs once the response has ended, however it ends."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], on_close: Callable[[], None],
                 headers: dict[str, str] | None = None):
        super().__init__(events, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})})
        self._events, self._on_close = events, on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self._events, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except RuntimeError:  # still running: it was cancelled mid-step and is unwinding itself
                        pass
            self._on_close()
