"""aromni: AR-Omni, one autoregressive transformer over text, image and speech tokens.

Public entry points:

* :func:`aromni.load` — open a bundle (model + tokenizers) ready for every task.
* :mod:`aromni.models` — the decoder (``load_decoder``), checkpoint formats and conversion.
* :mod:`aromni.vocab` — the vocabulary layout and the interleaved sequence format.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load(path: str, **kwargs: Any) -> Any:
    """Open a bundle directory and return a ready :class:`aromni.inference.OmniModel`.

    ``path="toy"`` (when no ``./toy`` exists) opens the toy-world bundle shipped with the package (see the README's
    "Toy world"). Keyword arguments: ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; default CPU) and
    ``dtype`` (``"float32"``, ``"float16"``, ``"bfloat16"`` or the torch dtype; default: as saved). A path that
    is not a bundle raises :class:`~aromni.errors.CheckpointError`, an unavailable device
    :class:`~aromni.errors.InputError`, an unknown dtype or option :class:`~aromni.errors.ConfigError`."""
    from pathlib import Path

    from aromni.errors import ConfigError, InputError
    from aromni.inference.omni import OmniModel

    unknown = sorted(set(kwargs) - {"device", "dtype"})
    if unknown:
        raise ConfigError(f"aromni.load() got unknown options {unknown}", "it takes path, device= and dtype=")
    if isinstance(path, bytes) or not isinstance(path, (str, Path)) or not str(path):
        raise InputError(f"aromni.load() takes a bundle directory (str or Path), got {type(path).__name__} "
                         f"{path!r:.80}", 'pass the bundle directory, or "toy" for the shipped toy bundle')
    if str(path) == "toy" and not Path(path).exists():
        from aromni.toyworld.demo import find_bundle

        bundle = find_bundle()
        if bundle is None:
            raise InputError("this installation ships no toy bundle",
                             "train one with `aromni toyworld train` and pass its bundle directory")
        path = str(bundle)
    return OmniModel.load(path, **kwargs)


__all__ = ["__version__", "load"]
