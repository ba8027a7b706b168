"""The OpenAI-compatible HTTP server: ``create_app(model, settings) -> FastAPI``.

::

    model = aromni.load("toy")
    app = create_app(model, ServeSettings(api_key="secret"))
    uvicorn.run(app, host="127.0.0.1", port=8000)       # what `aromni serve` does

Routes (each module documents its wire format): ``POST /v1/chat/completions`` (:mod:`.routes_chat`),
``POST /v1/audio/speech`` and ``/v1/audio/transcriptions`` (:mod:`.routes_audio`), ``WebSocket
/v1/audio/speech/stream`` (:mod:`.speech_socket`), ``POST /v1/images/generations`` (:mod:`.routes_images`),
``POST /v1/vivo`` (:mod:`.routes_vivo`), ``GET /v1/models``, ``/health``, ``/metrics`` and the web page
(:mod:`.routes_misc`). Errors are OpenAI error objects (:mod:`.api_errors`).

The model's engine is swapped for a :class:`~aromni.serve.batching.BatchingEngine` (unless it already is one),
so concurrent requests share the decoder's batch; the app's shutdown stops that engine and puts the model's
own engine back. This package needs the ``serve`` extra (FastAPI, uvicorn, websockets, python-multipart,
prometheus-client), which its modules import at the top; ``aromni serve`` checks for it before importing them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from aromni import __version__
from aromni.inference.omni import OmniModel
from aromni.omnivivo.api import VivoPipeline
from aromni.serve import routes_audio, routes_chat, routes_images, routes_misc, routes_vivo, speech_socket
from aromni.serve.api_errors import install_error_handlers
from aromni.serve.batching import BatchingEngine, enable_batching
from aromni.serve.limits import Admission, BodyLimitMiddleware
from aromni.serve.metrics import RequestCounterMiddleware, ServeMetrics
from aromni.serve.routes_misc import STATIC_DIR
from aromni.serve.settings import ServeSettings
from aromni.serve.state import ServeState

ROUTERS = (routes_chat.router, routes_audio.router, speech_socket.router, routes_images.router, routes_vivo.router,
           routes_misc.router)


def create_app(model: OmniModel, settings: ServeSettings, *, vivo: VivoPipeline | None = None,
               model_name: str = "aromni") -> FastAPI:
    """A FastAPI app serving ``model`` (and ``vivo``) under ``settings`` (see the module docstring)."""
    previous = model.engine
    owned = not isinstance(previous, BatchingEngine)
    engine = enable_batching(model, max_rows=settings.max_rows, max_active=settings.max_active,
                             batch_invariant=settings.batch_invariant) if owned else previous
    admission = Admission(settings.max_concurrent, settings.max_queue)
    metrics = ServeMetrics(engine, admission)
    state = ServeState(model, engine, settings, model_name, admission, metrics, vivo)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            engine.close()
            if model.engine is engine:
                model.engine = previous

    app = FastAPI(title="aromni", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible any-to-any API: chat with speech and images, text to speech, "
                              "speech to text, text to image.")
    app.state.aromni = state
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    endpoints = frozenset(path for router in ROUTERS for r in router.routes
                          if isinstance(path := getattr(r, "path", None), str))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestCounterMiddleware, metrics=metrics, endpoints=endpoints)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["X-Sample-Rate", "Retry-After"])
    return app
