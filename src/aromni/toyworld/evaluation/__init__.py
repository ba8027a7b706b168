"""The toy-world evaluation suite (``aromni eval --suite toy``): every AR-Omni task scored on a world's held-out
split, with the world's judges reading generated speech and images. See ``docs/eval.md``.

::

    from aromni.toyworld.evaluation import SuiteConfig, run_suite
    result = run_suite("BUNDLE", "data/toy", SuiteConfig(limits=20, seed=0))
    result.to_dict()["summary"]          # rows with value, target, pass
"""

from aromni.toyworld.evaluation.context import (
    DEFAULT_LIMITS,
    JUDGES_STEP,
    SCORED_TASKS,
    STREAMING_STEP,
    TASKS,
    SuiteConfig,
)
from aromni.toyworld.evaluation.generation import Caps
from aromni.toyworld.evaluation.suite import SuiteResult, run_suite

__all__ = ["DEFAULT_LIMITS", "JUDGES_STEP", "SCORED_TASKS", "STREAMING_STEP", "TASKS", "Caps", "SuiteConfig",
           "SuiteResult", "run_suite"]
