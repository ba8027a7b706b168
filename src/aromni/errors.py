"""User-facing errors.

Every error a user can cause (a bad path, a malformed checkpoint, an over-long prompt) is raised as an
:class:`AromniError` carrying a one-line problem statement and, where there is one, the fix. The CLI prints
``error: <problem> (<hint>)`` and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations


class AromniError(Exception):
    """An error caused by user input, with a hint on how to fix it."""

    def __init__(self, problem: str, hint: str | None = None):
        self.problem = problem
        self.hint = hint
        super().__init__(problem if hint is None else f"{problem} ({hint})")


class ConfigError(AromniError, ValueError):
    """An invalid configuration value or layout."""


class CheckpointError(AromniError):
    """A checkpoint that is missing, malformed, or of an unknown layout."""


class InputError(AromniError, ValueError):
    """Unreadable, empty, truncated or over-long user input (files, prompts, JSON)."""


class MissingExtraError(AromniError):
    """An optional feature whose extra (``pip install "aromni[eval]"``) is not installed."""


class TrainingDivergedError(AromniError):
    """A training run whose loss, gradients or weights stopped being finite numbers (nan / inf)."""
