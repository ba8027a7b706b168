"""``aromni serve``: the OpenAI-compatible HTTP server (chat, speech, transcription, images; a web page at ``/``).

::

    aromni serve --model toy                                  # http://127.0.0.1:8000, no key (loopback only)
    aromni serve --model BUNDLE --host 0.0.0.0 --api-key KEY  # beyond the loopback a key is required
    aromni serve --model toy --vivo runs/speech/omnivivo --vq runs/vq/tokenizer   # also POST /v1/vivo

The settings are checked before the model loads (a missing key, a bad limit: one ``error:`` line). The server
needs the ``serve`` extra; without it the command says so in one line. ``AROMNI_API_KEY`` gives the key when
``--api-key`` is not passed. See :mod:`aromni.serve.app` for the routes.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from aromni.cli import common
from aromni.errors import InputError
from aromni.omnivivo.api import VivoPipeline
from aromni.serve.settings import API_KEY_ENV, ServeSettings
from aromni.utils.extras import optional

#: The packages of the ``serve`` extra (import names), checked before the server's modules are imported.
SERVE_PACKAGES = ("fastapi", "uvicorn", "websockets", "python_multipart", "prometheus_client")
FEATURE = "`aromni serve`"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the model over an OpenAI-compatible HTTP API (and a web page)",
                       description="Serve a bundle over HTTP: /v1/chat/completions, /v1/audio/speech (+ a "
                                   "WebSocket for incremental text), /v1/audio/transcriptions, "
                                   "/v1/images/generations, /v1/models, /health, /metrics, and a web page at /.")
    common.add_model_args(p)
    d = ServeSettings(api_key=None)
    g = p.add_argument_group("server")
    g.add_argument("--host", default=d.host, help=f"interface to listen on (default {d.host}; any other than "
                                                  "the loopback needs --api-key)")
    g.add_argument("--port", type=common.nonneg_int, default=d.port, help=f"port (default {d.port}; 0: any free)")
    g.add_argument("--api-key", default=None,
                   help=f"bearer token every /v1 request must carry (default: ${API_KEY_ENV}; none: no auth)")
    g.add_argument("--model-name", default="aromni", help="the model id of /v1/models (default aromni)")
    g.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from this origin (repeatable; default: CORS off)")
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-batch", type=common.positive_int, default=d.max_rows,
                     help=f"batch rows of the continuous-batching engine (default {d.max_rows}; a CFG image "
                          "takes 3)")
    lim.add_argument("--max-active", type=common.positive_int, default=None,
                     help="requests decoding at once (default: as many as the rows hold; 1 serves one request at "
                          "a time, the baseline of benchmarks/serve_load.py)")
    lim.add_argument("--batch-invariant", action=argparse.BooleanOptionalAction, default=True,
                     help="decode every batch row at every step, so a request's tokens never depend on the load "
                          "(default); --no-batch-invariant decodes only the busy rows: faster under light load")
    lim.add_argument("--max-concurrent", type=common.positive_int, default=d.max_concurrent,
                     help=f"requests in flight at once (default {d.max_concurrent})")
    lim.add_argument("--max-queue", type=common.nonneg_int, default=d.max_queue,
                     help=f"requests waiting beyond those (default {d.max_queue}); more get 429")
    lim.add_argument("--timeout", type=common.positive_float, default=d.request_timeout_s,
                     help=f"seconds a request may take, queue included (default {d.request_timeout_s:g}); then 504")
    v = p.add_argument_group("OmniVIVO (POST /v1/vivo)")
    v.add_argument("--vivo", type=Path, default=None, help="an OmniVIVO export (OUT/omnivivo of "
                                                           "`aromni omnivivo train`)")
    v.add_argument("--vq", type=Path, default=None, help="its image tokenizer (required with --vivo)")
    p.set_defaults(func=run)


class RedactApiKey(logging.Filter):
    """Hides ``api_key=...`` in uvicorn's log lines (it logs WebSocket paths with their query string)."""

    PATTERN = re.compile(r"(api_key=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "api_key=" in message:
            record.msg, record.args = self.PATTERN.sub(r"\1[redacted]", message), None
        return True


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """The :class:`ServeSettings` of the flags (``--api-key`` unset: ``$AROMNI_API_KEY``)."""
    given = {"api_key": args.api_key} if args.api_key is not None else {}
    return ServeSettings(host=args.host, port=args.port, max_rows=args.max_batch, max_active=args.max_active,
                         batch_invariant=args.batch_invariant, max_concurrent=args.max_concurrent,
                         max_queue=args.max_queue, request_timeout_s=args.timeout,
                         cors_origins=tuple(args.cors_origin), **given)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if (args.vivo is None) != (args.vq is None):
        raise InputError("--vivo and --vq go together", "pass the OmniVIVO export and its image tokenizer, or neither")
    for package in SERVE_PACKAGES:
        optional(package, extra="serve", feature=FEATURE)
    uvicorn = optional("uvicorn", extra="serve", feature=FEATURE)
    # Imported here, not at the top: the server's modules need the serve extra, and every other command must
    # run without it.
    app_module = optional("aromni.serve.app", extra="serve", feature=FEATURE)
    if args.dtype is None and str(args.device).startswith("cpu"):
        # Half-precision matrix products are slow on most CPUs (a 32-row toy decode step: 45 ms in float16,
        # 14 ms in float32 on the development machine).
        args.dtype = "float32"
    model = common.load_model(args)
    vivo = VivoPipeline.load(args.vivo, args.vq, device=args.device) if args.vivo is not None else None
    app = app_module.create_app(model, settings, vivo=vivo, model_name=args.model_name)
    common.flush_notes(show=True)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info", lifespan="on")
    for name in ("uvicorn.error", "uvicorn.access"):  # WebSocket clients may pass the key as ?api_key=
        logging.getLogger(name).addFilter(RedactApiKey())
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down cleanly: the normal way to stop
        pass
    return 0
