"""Errors on the wire: every 4xx/5xx is one JSON object in OpenAI's shape, never a traceback.

``{"error": {"message": problem, "type": ..., "param": ..., "code": ..., "hint": hint}}``

:class:`APIError` is raised by the routes for HTTP-level refusals (401, 404, 413, 429, 504);
:func:`install_error_handlers` maps :class:`~aromni.errors.AromniError` (bad input: 400), request validation
errors (400, not FastAPI's 422), unknown routes and unexpected exceptions (500, logged) to the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aromni.errors import AromniError
from aromni.serve.batching import RequestCancelled
from aromni.utils.io import JSONValue

log = logging.getLogger("aromni.serve")

#: OpenAI's error ``type`` per status.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error", 499: "client_closed_request", 500: "server_error", 503: "server_error",
               504: "timeout_error"}


class APIError(Exception):
    """An HTTP error answer: ``status``, a one-line ``message`` (the problem) and its ``hint`` (the fix)."""

    def __init__(self, status: int, message: str, hint: str | None = None, *, param: str | None = None,
                 code: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint
        self.param, self.code = param, code
        self.headers = dict(headers or {})

    @classmethod
    def from_aromni(cls, e: AromniError, param: str | None = None) -> APIError:
        """A user mistake (400); a request the engine dropped at shutdown (503)."""
        if isinstance(e, RequestCancelled):
            return cls(503, e.problem, e.hint, code="cancelled")
        return cls(400, e.problem, e.hint, param=param, code=type(e).__name__)

    def detail(self) -> dict[str, JSONValue]:
        """The inner object: ``{"message", "type", "param", "code", "hint"}``."""
        return {"message": self.message, "type": ERROR_TYPES.get(self.status, "server_error"),
                "param": self.param, "code": self.code, "hint": self.hint}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.detail()}, status_code=self.status, headers=self.headers)


def as_api_error(e: BaseException) -> APIError:
    """Any exception as the error to answer with (unexpected ones: a logged 500 with no internals)."""
    if isinstance(e, APIError):
        return e
    if isinstance(e, AromniError):
        return APIError.from_aromni(e)
    log.error("unexpected error while serving a request", exc_info=e)
    return APIError(500, "internal server error", "see the server log", code="internal_error")


def validation_message(errors: Sequence[Mapping[str, object]]) -> tuple[str, str | None]:
    """``(message, param)`` of pydantic's first error: ``"messages.0.role: Input should be 'user' ..."``."""
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    param = ".".join(loc) or None
    msg = str(first.get("msg", "invalid value"))
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return (f"{param}: {msg}{more}" if param else f"{msg}{more}"), param


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` in the OpenAI shape (see the module docstring)."""

    async def api_error(_: Request, e: Exception) -> JSONResponse:
        return as_api_error(e).response()

    async def invalid(_: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, RequestValidationError)
        message, param = validation_message(e.errors())
        return APIError(400, message, "see /docs for the request schema", param=param,
                        code="invalid_value").response()

    async def http_error(_: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, StarletteHTTPException)
        message = e.detail if isinstance(e.detail, str) else "request refused"
        if e.status_code == 404 and message == "Not Found":
            message = "no such route"
        return APIError(e.status_code, message, "see /docs for the routes",
                        headers=e.headers or None).response()

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(AromniError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, api_error)
