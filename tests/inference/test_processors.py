"""Logits processors and sampling against Hugging Face's reference warpers, and the exponential-race sampler."""

import pytest
import torch

from aromni.inference.processors import (
    AllowOnly,
    PerState,
    ProcessorChain,
    RepetitionPenalty,
    StepContext,
    Temperature,
    TopK,
    TopP,
    repetition_penalty,
    top_k,
    top_p,
)
from aromni.inference.sampling import exponential_noise, make_generators, sample_from_probs, select_tokens

transformers = pytest.importorskip("transformers")


def _logits(B=3, V=50, seed=0):
    return torch.randn(B, V, generator=torch.Generator().manual_seed(seed)) * 3


def test_repetition_penalty_matches_hf():
    logits = _logits()
    ids = torch.tensor([[1, 5, 5, 7], [0, 2, 3, 49], [10, 11, 12, 13]])
    presence = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, ids, True)
    ref = transformers.RepetitionPenaltyLogitsProcessor(1.3)(ids, logits.clone())
    assert torch.equal(repetition_penalty(logits, presence, 1.3), ref)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.96, 1.0])
def test_top_p_matches_hf(p):
    logits = _logits()
    ref = transformers.TopPLogitsWarper(p)(None, logits.clone())
    assert torch.equal(top_p(logits, p), ref)


@pytest.mark.parametrize("k", [1, 5, 50])
def test_top_k_matches_hf(k):
    logits = _logits()
    ref = transformers.TopKLogitsWarper(k)(None, logits.clone())
    assert torch.equal(top_k(logits, k), ref)


def test_per_row_and_per_state_parameters_equal_row_by_row_calls():
    logits = _logits(B=3)
    state = torch.tensor([0, 1, 0])
    ctx = StepContext(state=state, presence=torch.rand(3, 50) < 0.2)
    chain = ProcessorChain([RepetitionPenalty(PerState.of([1.2, 1.0])), Temperature(PerState.of([1.5, 0.7])),
                            TopK(PerState.of([0, 10])), TopP(PerState.of([0.9, 0.5]))])
    out = chain(logits, ctx)
    for b, s in enumerate(state.tolist()):
        row = logits[b:b + 1]
        row = repetition_penalty(row, ctx.presence[b:b + 1], [1.2, 1.0][s])
        row = row / [1.5, 0.7][s]
        row = top_k(row, [0, 10][s])
        row = top_p(row, [0.9, 0.5][s])
        assert torch.allclose(out[b], row[0], equal_nan=False)


def test_chain_drops_noops_and_allow_only_masks():
    chain = ProcessorChain([AllowOnly(None), RepetitionPenalty(1.0), Temperature(1.0), TopK(0), TopP(1.0)])
    assert len(chain.processors) == 1
    allowed = torch.zeros(2, 50, dtype=torch.bool)
    allowed[:, [3, 9]] = True
    out = chain(_logits(B=2), StepContext(allowed=allowed))
    assert torch.isfinite(out[allowed]).all() and torch.isinf(out[~allowed]).all()


def test_exponential_race_samples_the_distribution():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    gens = make_generators([0], "cpu")
    counts = torch.zeros(4)
    for _ in range(4000):
        counts[sample_from_probs(probs, exponential_noise(gens, 4, "cpu"))] += 1
    freq = counts / counts.sum()
    assert torch.allclose(freq, probs[0], atol=0.03), freq


def test_select_tokens_greedy_rows_take_argmax_and_seeds_reproduce():
    logits = _logits(B=4, V=30)
    greedy = torch.tensor([True, False, True, False])
    a = select_tokens(logits, greedy, exponential_noise(make_generators([1, 2, 3, 4], "cpu"), 30, "cpu"))
    b = select_tokens(logits, greedy, exponential_noise(make_generators([1, 2, 3, 4], "cpu"), 30, "cpu"))
    assert torch.equal(a, b)
    assert torch.equal(a[greedy], logits.argmax(-1)[greedy])
