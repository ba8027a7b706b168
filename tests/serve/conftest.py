"""Fixtures of the serving tests: one shipped toy model per test module (``toy_model``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import aromni
from aromni.inference.omni import OmniModel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # servekit


@pytest.fixture(scope="module")
def toy_model() -> OmniModel:
    """The shipped toy bundle, loaded once per module (an app swaps its engine for a batching one and puts it
    back at shutdown)."""
    return aromni.load("toy")
