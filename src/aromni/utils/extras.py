"""Optional dependencies: import them where a feature needs them, and say which extra installs them.

``optional("jiwer", extra="eval", feature="word error rates")`` returns the module, or raises a
:class:`~aromni.errors.MissingExtraError` whose one line names the feature and the install command, so a user
of the runtime install never sees a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from aromni.errors import MissingExtraError


def optional(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module`` (e.g. ``"matplotlib.pyplot"``) or raise :class:`MissingExtraError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = (e.name or module).split(".")[0]
        raise MissingExtraError(f"{feature} needs the '{missing}' package, which is not installed",
                                f'pip install "aromni[{extra}]"') from None
