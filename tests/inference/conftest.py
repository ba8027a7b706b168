"""Fixtures: tiny random bundles with every modality (see ``tinyparts``)."""

from __future__ import annotations

import pytest
import torch
from tinyparts import tiny_decoder, tiny_image_tokenizer, tiny_speech_tokenizer, tiny_text_and_layout

from aromni.bundle import save_bundle


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models gain nothing from intra-op threads, and on a shared, loaded machine extra threads spin-wait
    # (measured here under load: 30 decode steps of a 3-row tiny model took 5.3 s with 2 threads, 0.38 s with 1).
    # Restored after each test.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_parts():
    image, speech = tiny_image_tokenizer(), tiny_speech_tokenizer()
    text, layout = tiny_text_and_layout(image.codebook_size, speech.codebook_size)
    return text, layout, image, speech


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_parts):
    """A bundle directory with every modality (random weights)."""
    text, layout, image, speech = tiny_parts
    path = tmp_path_factory.mktemp("bundle") / "tiny"
    save_bundle(path, tiny_decoder(layout, max_seq_len=512), layout, text=text, image=image, speech=speech)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_bundle):
    from aromni.inference.omni import OmniModel

    return OmniModel.load(tiny_bundle)

