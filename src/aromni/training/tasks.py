"""Task names in training: shards carry a ``task`` per sample, in our spelling or the official training code's.

Loss options that name tasks (``loss.tail_tasks``, ``perceptual.tasks``) accept either spelling: both sides go
through :func:`canonical_task`. The names and aliases live in the task registry, :mod:`aromni.vocab.tasks`.
"""

from __future__ import annotations

from aromni.vocab.tasks import canonical_task, canonical_tasks

__all__ = ["canonical_task", "canonical_tasks"]
