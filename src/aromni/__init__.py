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
    """Open a bundle directory and return a ready :class:`aromni.inference.OmniModel`."""
    from aromni.inference.omni import OmniModel

    return OmniModel.load(path, **kwargs)


__all__ = ["__version__", "load"]
