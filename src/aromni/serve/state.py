"""What every route of one app shares (:class:`ServeState`, on ``app.state.aromni``), and the API-key check.

Routes get it with ``state: ServeState = Depends(serve_state)`` and start their model work with
:meth:`ServeState.start_job`, which waits for an admission slot (or answers 429) before the deadline.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import weakref
from dataclasses import dataclass, field

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from aromni.inference.omni import OmniModel
from aromni.omnivivo.api import VivoPipeline
from aromni.serve.api_errors import APIError
from aromni.serve.batching import BatchingEngine
from aromni.serve.limits import Admission
from aromni.serve.metrics import ServeMetrics
from aromni.serve.runner import Job
from aromni.serve.settings import API_KEY_ENV, ServeSettings

#: Worker threads beyond ``max_concurrent`` (image requests run several calls at once; closing runs one more).
EXTRA_THREADS = 8


@dataclass
class ServeState:
    """The model, its batching engine, the settings, admission and metrics of one app.

    Attributes:
        vivo: the OmniVIVO pipeline, or ``None`` (``/v1/vivo`` answers 404); its calls hold ``vivo_lock``.
    """

    model: OmniModel
    engine: BatchingEngine
    settings: ServeSettings
    model_name: str
    admission: Admission
    metrics: ServeMetrics
    vivo: VivoPipeline | None = None
    vivo_lock: threading.Lock = field(default_factory=threading.Lock)
    _limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = field(
        default_factory=weakref.WeakKeyDictionary, init=False, repr=False)

    def limiter(self) -> anyio.CapacityLimiter:
        """The worker-thread limiter of the running event loop (a limiter belongs to one loop)."""
        loop = asyncio.get_running_loop()
        if loop not in self._limiters:
            self._limiters[loop] = anyio.CapacityLimiter(self.settings.max_concurrent + EXTRA_THREADS)
        return self._limiters[loop]

    def job(self, conn: HTTPConnection | None = None) -> Job:
        """A :class:`~aromni.serve.runner.Job` with the request timeout (no slot yet)."""
        return Job(self.engine, self.limiter(), self.settings.request_timeout_s, conn=conn,
                   on_finish=self.metrics.sample_tokens)

    async def start_job(self, conn: HTTPConnection) -> Job:
        """A :class:`~aromni.serve.runner.Job` holding an admission slot; 429 when the queue is full, 504 when
        the slot does not come before the request's deadline."""
        job = self.job(conn)
        with anyio.move_on_after(job.remaining()):
            job.slot = await self.admission.acquire()
        if job.slot is None:
            raise job.timeout_error()
        return job


def serve_state(request: Request) -> ServeState:
    """The :class:`ServeState` of the app serving ``request`` (a FastAPI dependency)."""
    return request.app.state.aromni


def key_matches(settings: ServeSettings, authorization: str | None, query_key: str | None = None) -> bool:
    """Whether a request may pass: no key configured, or ``Authorization: Bearer KEY`` (or ``?api_key=KEY``,
    for WebSockets) carries the key (compared in constant time)."""
    want = settings.api_key
    if want is None:
        return True
    given = query_key
    if authorization:
        scheme, _, token = authorization.partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    return given is not None and hmac.compare_digest(given.encode(), want.encode())


def unauthorized() -> APIError:
    return APIError(401, "missing or wrong API key", f"send the header 'Authorization: Bearer KEY' with the "
                    f"server's key (--api-key / {API_KEY_ENV})", code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"})


#: Declares the bearer scheme in the OpenAPI document (the /docs page's Authorize button); checked below.
_BEARER = HTTPBearer(auto_error=False, description="the server's API key (--api-key / AROMNI_API_KEY)")


def require_api_key(request: Request, _: HTTPAuthorizationCredentials | None = Depends(_BEARER)) -> None:
    """A FastAPI dependency of the ``/v1`` routes: :func:`unauthorized` unless the key matches."""
    if not key_matches(serve_state(request).settings, request.headers.get("authorization")):
        raise unauthorized()
