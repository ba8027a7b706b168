"""Admission and body limits: at most ``max_concurrent`` requests in flight, ``max_queue`` waiting, the rest 429;
bodies over ``max_body_bytes`` 413.

:class:`Admission` hands out :class:`Slot` s first come, first served. A released slot passes straight to the
oldest waiter, so a burst cannot overtake requests already queued. It runs on the event loop only (no lock); its
waits are per-call :class:`anyio.Event` s, so one instance serves any number of event loops one after another (a
test's several clients).

:class:`BodyLimitMiddleware` is plain ASGI (no ``BaseHTTPMiddleware``, which would break streaming and
disconnect detection): it refuses a declared ``Content-Length`` over the limit at once, and otherwise reads the
body up to the limit before the route sees it, then replays it.
"""

from __future__ import annotations

from collections import deque

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aromni.serve.api_errors import APIError

#: ``Retry-After`` of a 429 (seconds): a guess; requests take about this long on small models.
RETRY_AFTER_S = 1


class Slot:
    """One admitted request; :meth:`release` (idempotent) frees it for the next one."""

    def __init__(self, admission: Admission):
        self._admission: Admission | None = admission

    def release(self) -> None:
        if self._admission is not None:
            admission, self._admission = self._admission, None
            admission._release()


class Admission:
    """Counts requests in flight and waiting (see the module docstring)."""

    def __init__(self, max_concurrent: int, max_queue: int):
        self.max_concurrent, self.max_queue = max_concurrent, max_queue
        self.in_flight = 0
        self._waiters: deque[anyio.Event] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> Slot:
        """A slot now, or after the requests ahead of this one; :class:`APIError` 429 when the queue is full."""
        if self.in_flight < self.max_concurrent and not self._waiters:
            self.in_flight += 1
            return Slot(self)
        if len(self._waiters) >= self.max_queue:
            raise APIError(429, f"the server is busy: {self.in_flight} requests in flight and {self.waiting} "
                                "waiting (its limits are max_concurrent and max_queue)",
                           f"retry after {RETRY_AFTER_S} s", code="server_busy",
                           headers={"Retry-After": str(RETRY_AFTER_S)})
        ready = anyio.Event()
        self._waiters.append(ready)
        try:
            await ready.wait()
        except BaseException:
            if ready in self._waiters:
                self._waiters.remove(ready)
            else:  # the slot was handed to us just as we were cancelled: pass it on
                self._release()
            raise
        return Slot(self)  # handed over by _release: in_flight already counts it

    def _release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self.in_flight -= 1


class BodyLimitMiddleware:
    """Refuse HTTP bodies over ``max_bytes`` with 413 (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, int(declared))
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending its body
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, None)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int | None) -> None:
        said = f"{size:,} bytes" if size is not None else "larger than that"
        err = APIError(413, f"the request body is {said}; this server accepts at most {self.max_bytes:,} bytes "
                            "(max_body_bytes)", "send smaller audio or images", code="request_too_large")
        await err.response()(scope, receive, send)
