"""Image-tokenizer tests run single-threaded: these small convolutions gain nothing from a second thread, and on
a shared, loaded machine two OpenMP threads made a tiny training step 30x slower (2.6 s vs 0.08 s)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
