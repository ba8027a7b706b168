"""Fixtures: tiny random bundles with every modality (see ``tinyparts``)."""

from __future__ import annotations

import pytest
from tinyparts import tiny_decoder, tiny_image_tokenizer, tiny_speech_tokenizer, tiny_text_and_layout

from aromni.bundle import save_bundle


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

