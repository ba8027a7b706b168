"""Shared fixtures: deterministic seeds, default dtype restored after every test."""

from __future__ import annotations

import os

import pytest
import torch

# Tests share 2 CPU cores with whatever else runs; keep intra-op threads modest and deterministic.
torch.set_num_threads(int(os.environ.get("AROMNI_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    torch.manual_seed(0)
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)
