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
    "Toy world")."""
    from pathlib import Path

    from aromni.inference.omni import OmniModel

    if str(path) == "toy" and not Path(path).exists():
        from aromni.errors import InputError
        from aromni.toyworld.demo import find_bundle

        bundle = find_bundle()
        if bundle is None:
            raise InputError("this installation ships no toy bundle",
                             "train one with `aromni toyworld train` and pass its bundle directory")
        path = str(bundle)
    return OmniModel.load(path, **kwargs)


__all__ = ["__version__", "load"]
