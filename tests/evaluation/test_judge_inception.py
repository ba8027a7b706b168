"""Inception Score: the formula against hand computations, and InceptionJudge on random weights the test writes in
the FID Inception layout (shapes, determinism, batching, image sizes and modes, one-line errors)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from aromni.errors import CheckpointError, InputError
from aromni.evaluation.judges import InceptionJudge, inception_score

Image = pytest.importorskip("PIL.Image")


def test_inception_score_by_hand():
    # identical predictions: p(y|x) = p(y), KL 0, IS 1; confident and disjoint: KL log 2 each, IS 2
    assert inception_score(np.full((4, 3), 1 / 3), splits=2, shuffle_seed=None) == pytest.approx((1.0, 0.0))
    assert inception_score(np.eye(2), splits=1, shuffle_seed=None) == pytest.approx((2.0, 0.0))
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.6, 0.4]])
    # both halves have the marginal [0.55, 0.45]
    kl = [0.9 * math.log(0.9 / 0.55) + 0.1 * math.log(0.1 / 0.45),
          0.2 * math.log(0.2 / 0.55) + 0.8 * math.log(0.8 / 0.45),
          0.5 * math.log(0.5 / 0.55) + 0.5 * math.log(0.5 / 0.45),
          0.6 * math.log(0.6 / 0.55) + 0.4 * math.log(0.4 / 0.45)]
    halves = [math.exp((kl[0] + kl[1]) / 2), math.exp((kl[2] + kl[3]) / 2)]
    mean, std = inception_score(p, splits=2, shuffle_seed=None)
    assert mean == pytest.approx(sum(halves) / 2, rel=1e-12)
    assert std == pytest.approx(abs(halves[0] - halves[1]) / 2, rel=1e-12)
    assert inception_score(p, splits=1, shuffle_seed=None)[0] == pytest.approx(math.exp(sum(kl) / 4 + 0.0), rel=1e-12)


def test_shuffle_matches_torch_fidelity_convention():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((23, 7)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    perm = np.random.RandomState(2020).permutation(23)
    assert inception_score(p, splits=5) == inception_score(p[perm], splits=5, shuffle_seed=None)
    assert inception_score(p, splits=5) != inception_score(p, splits=5, shuffle_seed=None)


def test_inception_score_bad_input():
    with pytest.raises(InputError, match="N >= splits"):
        inception_score(np.full((3, 2), 0.5), splits=10)
    with pytest.raises(InputError, match="N >= splits"):
        inception_score(np.full(4, 0.25), splits=1)
    with pytest.raises(InputError, match="non-finite"):
        inception_score(np.array([[np.nan, 1.0]]), splits=1)


def _images():
    rng = np.random.default_rng(3)
    ims = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    return ims + [Image.fromarray(rng.integers(0, 256, (24, 40), dtype=np.uint8))]  # another size, greyscale


@pytest.fixture(scope="module")
def judge(tiny_inception_weights):
    return InceptionJudge(tiny_inception_weights, batch_size=2)


def test_probs_shape_determinism_batching(judge, tiny_inception_weights):
    ims = _images()
    p = judge.probs(ims)
    assert p.shape == (3, 1008) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-12)
    assert np.abs(p[0] - p[1]).max() > 1e-3  # random weights that still tell images apart
    np.testing.assert_array_equal(judge.probs(ims), p)
    single = np.concatenate([judge.probs([im]) for im in ims])
    np.testing.assert_allclose(single, p, rtol=1e-5, atol=1e-9)
    rgb = judge.probs([ims[2].convert("RGB")])
    np.testing.assert_array_equal(rgb[0], p[2])
    assert judge.probs([]).shape == (0, 1008)
    assert judge.describe()["weights"] == str(tiny_inception_weights)


def test_probs_are_softmax_of_unbiased_logits(judge):
    im = _images()[0]
    x = torch.from_numpy(np.asarray(im)).permute(2, 0, 1)[None]
    with torch.no_grad():
        (unbiased,) = judge.model(x)
        judge.model.features_list = ["2048"]
        try:
            (pooled,) = judge.model(x)
        finally:
            judge.model.features_list = ["logits_unbiased"]
    torch.testing.assert_close(unbiased, pooled @ judge.model.fc.weight.T)  # no fc bias in the logits
    np.testing.assert_allclose(judge.probs([im])[0], torch.softmax(unbiased.double(), 1)[0].numpy(), rtol=1e-12)


def test_bad_weight_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        InceptionJudge(tmp_path / "missing.pth")
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        InceptionJudge(bad)
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"fc.weight": print}))
    with pytest.raises(CheckpointError):
        InceptionJudge(evil)
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(10, 2048)}, wrong)
    with pytest.raises(CheckpointError, match=r"no fc.weight \[1008, 2048\]"):
        InceptionJudge(wrong)
    partial = tmp_path / "partial.pth"
    torch.save({"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}, partial)
    with pytest.raises(CheckpointError, match="not the FID Inception layout") as e:
        InceptionJudge(partial)
    assert "\n" not in str(e.value)
