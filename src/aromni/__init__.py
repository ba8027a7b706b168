"""aromni: AR-Omni, one autoregressive transformer over text, image and speech tokens.

Public entry points:

* :func:`aromni.load` — open a bundle (model + tokenizers) ready for every task.
* :mod:`aromni.models` — the decoder (``load_decoder``), checkpoint formats and conversion.
* :mod:`aromni.vocab` — the vocabulary layout and the interleaved sequence format.
"""

from __future__ import annotations

from pathlib import Path

import torch

from aromni.bundle import resolve_bundle
from aromni.errors import ConfigError, InputError
from aromni.inference.omni import OmniModel

__version__ = "0.1.0"


def load(path: str | Path, *, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
         compile: bool = False, quantize: str | None = None, **unknown: object) -> OmniModel:
    """Open a bundle directory and return a ready :class:`~aromni.inference.omni.OmniModel`.

    ``path="toy"`` (when no ``./toy`` exists) opens the toy-world bundle shipped with the package (see the README's
    "Toy world"; named bundles: :data:`aromni.bundle.NAMED_BUNDLES`). Keyword arguments: ``device`` (``"cpu"``,
    ``"cuda"``, ``"cuda:1"``, ...; default CPU) and ``dtype`` (``"float32"``, ``"float16"``, ``"bfloat16"`` or the
    torch dtype; default: as saved), ``compile`` (decode with the compiled static step) and ``quantize``
    (``"int8"``: weight-only int8 linear layers). A path that is not a bundle raises :class:`~aromni.errors.CheckpointError`,
    an unavailable device :class:`~aromni.errors.InputError`, an unknown dtype or option
    :class:`~aromni.errors.ConfigError`."""
    if unknown:
        raise ConfigError(f"aromni.load() got unknown options {sorted(unknown)}", "it takes path, device=, dtype=, compile= and quantize=")
    if isinstance(path, bytes) or not isinstance(path, (str, Path)) or not str(path):
        raise InputError(f"aromni.load() takes a bundle directory (str or Path), got {type(path).__name__} "
                         f"{path!r:.80}", 'pass the bundle directory, or "toy" for the shipped toy bundle')
    return OmniModel.load(resolve_bundle(path), device=device, dtype=dtype, compile=compile, quantize=quantize)


__all__ = ["OmniModel", "__version__", "load"]
