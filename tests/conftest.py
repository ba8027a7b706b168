"""Shared fixtures: deterministic seeds, one intra-op thread, default dtype restored after every test."""

from __future__ import annotations

import os

import pytest
import torch

# The suite runs as several pytest-xdist workers (one per core) and its models are tiny: one intra-op thread
# per worker is fastest and never oversubscribes the cores (measured on this 2-core machine: 30 decode steps of
# a 3-row tiny model took 5.3 s with 2 threads under load, 0.38 s with 1). AROMNI_TEST_THREADS overrides it.
THREADS = int(os.environ.get("AROMNI_TEST_THREADS", "1"))


@pytest.fixture(autouse=True)
def _seed_threads_dtype():
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(THREADS)
