"""ClipScorer on a tiny random CLIP written by the test: scores equal a hand computation from the model's own
forward pass, long texts are truncated to 77 tokens, batching changes nothing, bad inputs are one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aromni.errors import CheckpointError, InputError
from aromni.evaluation.judges import ClipScorer

Image = pytest.importorskip("PIL.Image")


def _images(n: int) -> list:
    rng = np.random.default_rng(1)
    sizes = [(40, 50), (32, 32), (64, 20), (33, 47)]
    return [Image.fromarray(rng.integers(0, 256, (*sizes[i % 4], 3), dtype=np.uint8)) for i in range(n)]


TEXTS = ["a red cat on a mat", "two dogs", "an empty room at night, lit by one lamp", "zebra"]


@pytest.fixture(scope="module")
def scorer(tiny_clip_dir):
    return ClipScorer(tiny_clip_dir, batch_size=3)


def _by_hand(scorer, images, texts) -> np.ndarray:
    """Cosines from CLIPModel's forward pass (its normalised image_embeds / text_embeds), clipped at 0, x100."""
    inputs = scorer.processor(text=texts, images=images, return_tensors="pt", padding=True, truncation=True,
                              max_length=77)
    with torch.no_grad():
        out = scorer.model(**inputs)
    cos = (out.image_embeds * out.text_embeds).sum(-1).numpy()
    return 100 * np.maximum(cos, 0)


def test_scores_equal_hand_computation(scorer):
    images = _images(4)
    scores = scorer.score(images, TEXTS)
    assert len(scores) == 4 and all(isinstance(s, float) for s in scores)
    np.testing.assert_allclose(scores, _by_hand(scorer, images, TEXTS), rtol=1e-5, atol=1e-4)
    assert all(0.0 <= s <= 100.0 for s in scores)
    # the random model gives some negative cosines among all pairs: those clip to exactly 0
    inputs = scorer.processor(text=TEXTS, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        raw = scorer.model(**inputs).logits_per_image
    assert (raw < 0).any()
    crossed = scorer.score(images * 4, [t for t in TEXTS for _ in range(4)])
    np.testing.assert_allclose(crossed, 100 * np.maximum(raw.T.reshape(-1).numpy() / scorer.model.logit_scale.exp()
                                                         .item(), 0), rtol=1e-5, atol=1e-4)


def test_long_text_truncated_to_77_tokens(scorer):
    long = "word " * 200
    images = _images(1)
    assert scorer.score(images, [long]) == pytest.approx(scorer.score(images, [long + " and more words"]), abs=1e-5)
    np.testing.assert_allclose(scorer.score(images, [long]), _by_hand(scorer, images, [long]), rtol=1e-5, atol=1e-4)


def test_batching_and_modes(scorer, tiny_clip_dir):
    images = _images(4)
    one = ClipScorer(tiny_clip_dir, batch_size=1).score(images, TEXTS)
    np.testing.assert_allclose(scorer.score(images, TEXTS), one, rtol=1e-5, atol=1e-4)
    grey = [im.convert("L") for im in images]
    np.testing.assert_allclose(scorer.score(grey, TEXTS), scorer.score([g.convert("RGB") for g in grey], TEXTS))
    assert scorer.score([], []) == []
    d = scorer.describe()
    assert d["max_text_tokens"] == 77 and d["image_size"] == 32 and d["directory"] == str(tiny_clip_dir)


def test_bad_inputs(scorer, tiny_whisper_dir, tmp_path):
    with pytest.raises(InputError, match="2 images but 1 texts"):
        scorer.score(_images(2), ["one"])
    with pytest.raises(CheckpointError, match="'whisper', not 'clip'") as e:
        ClipScorer(tiny_whisper_dir)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="does not exist"):
        ClipScorer(tmp_path / "missing")
