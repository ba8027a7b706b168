"""Tiny random bundles for the eval, report and demo tests: the real classes at toy sizes (a BPE trained on the
world's grammar, the ``tiny`` VQGAN and StreamingCodec presets from ``tests/inference/tinyparts.py``, a ``tiny``
decoder with a long enough context), saved with ``aromni.bundle.save_bundle`` in the recipe's prompt style."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from tinyparts import BiasedDecoder, tiny_decoder, tiny_image_tokenizer, tiny_speech_tokenizer

from aromni.bundle import save_bundle
from aromni.tokenizers.text import TextTokenizer
from aromni.vocab.layout import VocabLayout


def world_corpus() -> list[str]:
    from aromni.toyworld import grammar

    texts = list(grammar.INSTRUCTIONS.values()) + grammar.facts() + [t for p in grammar.exchanges() for t in p]
    texts += ["USER: ASSISTANT:", " ".join(grammar.spoken_vocabulary())]
    return texts * 3


def save_tiny_bundle(path: Path, seed: int = 0, max_seq_len: int = 1024) -> Path:
    image, speech = tiny_image_tokenizer(), tiny_speech_tokenizer()
    probe = VocabLayout.compact(0, image.codebook_size, speech.codebook_size)
    specials = probe.special_token_strings()
    text = TextTokenizer.train(world_corpus(), 600, specials, min_frequency=1)
    layout = VocabLayout.compact(text.vocab_size - len(specials), image.codebook_size, speech.codebook_size)
    decoder = tiny_decoder(layout, seed, max_seq_len=max_seq_len)
    save_bundle(path, decoder, layout, text=text, image=image, speech=speech, style="paper")
    return path


def speaking_model(bundle: Path):
    """The bundle loaded with a logit bias that makes the random decoder open speech spans and stop, so the
    speech-output paths (judge on generated audio, streaming latency) get real audio to work on."""
    from aromni.inference.omni import OmniModel

    model = OmniModel.load(bundle)
    L = model.layout
    bias = torch.zeros(L.vocab_size)
    bias[L.boa] += 6.0
    bias[L.mask("speech")] += 3.0
    bias[L.eoa] += 1.0
    biased = BiasedDecoder(model.bundle.decoder, bias)
    model.bundle.decoder = biased
    model.engine.decoder = biased
    return model


@pytest.fixture(scope="module", name="bundle")
def bundle_fixture(tmp_path_factory):
    """A tiny random bundle directory, one per test module."""
    return save_tiny_bundle(tmp_path_factory.mktemp("evalbundle") / "tiny")
