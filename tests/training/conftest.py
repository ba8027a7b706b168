"""Fixtures of the training tests: a compact layout, a word tokenizer, a small synthetic corpus."""

from __future__ import annotations

import pytest
from training_helpers import Words

from aromni.training.data.synthetic import write_synthetic_shards
from aromni.vocab.layout import VocabLayout


@pytest.fixture
def layout() -> VocabLayout:
    return VocabLayout.compact(n_text=40, n_image=16, n_speech=24)


@pytest.fixture
def words(layout) -> Words:
    return Words(layout)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A small synthetic corpus (shared read-only by the tests of a session)."""
    root = tmp_path_factory.mktemp("synth")
    write_synthetic_shards(root, n_train=240, n_val=10, seed=0)
    return root
