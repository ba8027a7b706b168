"""``ServeSettings``: the limits and the address of ``aromni serve``, checked once when they are built.

Every limit is per server: ``max_concurrent`` requests run at once (each may hold batch rows), ``max_queue``
more wait for a slot, anything beyond gets ``429``. A request (its queue wait included) that runs longer than
``request_timeout_s`` is cancelled and answered ``504``. Bodies over ``max_body_bytes`` get ``413``; audio over
``max_audio_seconds`` and images over ``max_image_pixels`` get ``400`` naming the limit.

Serving beyond the loopback interface needs an API key (``--api-key`` or ``AROMNI_API_KEY``): the model would
otherwise be open to anyone who can reach the port.
"""

from __future__ import annotations

import ipaddress
import math
import numbers
import os
from dataclasses import dataclass, field

from aromni.errors import ConfigError

#: The environment variable that gives the API key when ``--api-key`` is not passed.
API_KEY_ENV = "AROMNI_API_KEY"


def _env_api_key() -> str | None:
    return os.environ.get(API_KEY_ENV) or None


def is_loopback(host: str) -> bool:
    """``True`` for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``); ``0.0.0.0`` is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServeSettings:
    """Address, authentication and limits of the HTTP server.

    Attributes:
        host, port: where to listen (port 0: any free port).
        api_key: the bearer token every ``/v1`` request must carry (default: ``$AROMNI_API_KEY``; ``None``: no
            authentication, allowed only on a loopback host).
        max_rows: batch rows of the continuous-batching engine (a CFG image takes three).
        max_active: requests decoding at once (``None``: as many as the rows hold; ``1``: one at a time).
        batch_invariant: decode every row at every step, so a request's tokens never depend on the load
            (``False``: only the busy rows, faster under light load; see :class:`~aromni.serve.batching.
            BatchingEngine`).
        max_concurrent: requests in flight at once.
        max_queue: requests waiting for a slot beyond ``max_concurrent`` (then ``429``).
        max_body_bytes: largest request body (``413`` beyond).
        max_audio_seconds: longest uploaded audio.
        max_image_pixels: largest uploaded image (width x height).
        max_images, max_audio_clips: images and audio clips in one chat request (all turns together).
        request_timeout_s: a request's wall-clock limit, queue wait included (``504`` beyond).
        cors_origins: origins allowed to call the API from a browser (empty: CORS off).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = field(default_factory=_env_api_key)
    max_rows: int = 8
    max_active: int | None = None
    batch_invariant: bool = True
    max_concurrent: int = 32
    max_queue: int = 64
    max_body_bytes: int = 25 * 1024 * 1024
    max_audio_seconds: float = 60.0
    max_image_pixels: int = 4096 * 4096
    max_images: int = 16
    max_audio_clips: int = 16
    request_timeout_s: float = 300.0
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise ConfigError(f"host must be a non-empty string, got {self.host!r}", "e.g. --host 127.0.0.1")
        _int(self, "port", 0, 65535)
        _int(self, "max_rows", 1)
        if self.max_active is not None:
            _int(self, "max_active", 1)
        _int(self, "max_concurrent", 1)
        _int(self, "max_queue", 0)
        _int(self, "max_body_bytes", 1)
        _int(self, "max_image_pixels", 1)
        _int(self, "max_images", 0)
        _int(self, "max_audio_clips", 0)
        _positive(self, "max_audio_seconds")
        _positive(self, "request_timeout_s")
        if isinstance(self.cors_origins, str) or not all(isinstance(o, str) and o for o in self.cors_origins):
            raise ConfigError(f"cors_origins must be a list of origins, got {self.cors_origins!r}",
                              "e.g. --cors-origin http://localhost:3000")
        self.cors_origins = tuple(self.cors_origins)
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key.strip()):
            raise ConfigError("the API key is empty", "pass a non-empty --api-key (or set AROMNI_API_KEY)")
        if self.api_key is None and not is_loopback(self.host):
            raise ConfigError(f"serving on {self.host} without an API key would let anyone who reaches the port "
                              "use the model", f"pass --api-key KEY (or set {API_KEY_ENV}), or serve on 127.0.0.1")


def _int(s: ServeSettings, name: str, low: int, high: int | None = None) -> None:
    v = getattr(s, name)
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low or (high is not None and v > high):
        span = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be an integer {span}, got {v!r}")
    setattr(s, name, int(v))


def _positive(s: ServeSettings, name: str) -> None:
    v = getattr(s, name)
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)) or v <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")
    setattr(s, name, float(v))
