"""``GET /v1/models``, ``GET /health``, ``GET /metrics`` and the web page (``GET /`` -> ``static/index.html``).

``/health``, ``/metrics`` and the page need no API key (as in vLLM: load balancers and scrapers probe them, and
they reveal no model output); ``/v1/models`` does.
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from aromni.serve.api_errors import APIError
from aromni.serve.schemas import ErrorResponse, Health, ModelCard, ModelList
from aromni.serve.state import ServeState, require_api_key, serve_state

#: The web page's files (written by the page's own module; the server runs without them).
STATIC_DIR = Path(__file__).resolve().parent / "static"

router = APIRouter()
#: When the server started (``created`` of ``/v1/models``).
STARTED = int(time.time())


@router.get("/v1/models", response_model=ModelList, dependencies=[Depends(require_api_key)],
            responses={401: {"model": ErrorResponse}})
async def models(state: ServeState = Depends(serve_state)) -> ModelList:
    return ModelList(data=[ModelCard(id=state.model_name, created=STARTED)])


@router.get("/health", response_model=Health)
async def health() -> Health:
    return Health()


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(state: ServeState = Depends(serve_state)) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/", response_class=FileResponse, include_in_schema=False)
async def index() -> FileResponse:
    page = STATIC_DIR / "index.html"
    if not page.is_file():
        raise APIError(404, "the web page is not installed in this build", "use the API under /v1 (see /docs)",
                       code="no_web_page")
    return FileResponse(page, media_type="text/html")
