"""A smoke world built once per test session (a few seconds)."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def smoke_world(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from aromni.toyworld.build import build_world

    out = tmp_path_factory.mktemp("tw") / "smoke"
    build_world(out, size="smoke", seed=0, workers=2, progress=False)
    return out
