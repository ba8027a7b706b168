"""Repetition-aware sampling by hand on small distributions, the vectorised sampler against a per-row loop written
after CosyVoice's code, and the speech length rules in the decoding loop (EOS masked before min_len, stop at
max_len, RAS breaking a repetition)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from aromni.errors import ConfigError
from aromni.inference.sampling import make_generators
from aromni.omnivivo.lora import LoRAConfig
from aromni.omnivivo.ras import SpeechSampling, mask_eos, nucleus_keep, ras_sample, repeats
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone, left_pad_captions
from aromni.omnivivo.vivo_config import VivoConfig
from aromni.omnivivo.vivo_generate import collect, generate
from aromni.omnivivo.vivo_model import VivoModel

P = torch.tensor([[0.5, 0.25, 0.125, 0.125]])  # exact binary fractions: cumulative sums are exact too


def _logits(p: torch.Tensor) -> torch.Tensor:
    return p.log()


@pytest.mark.parametrize("top_p,top_k,kept", [
    (0.75, 25, [1, 1, 0, 0]),  # masses before each: 0, .5, .75 -> the third is not < .75
    (0.8, 25, [1, 1, 1, 0]),   # .75 < .8: the crossing token is kept
    (1.0, 25, [1, 1, 1, 1]),
    (0.3, 25, [1, 0, 0, 0]),   # the top token is always kept
    (1.0, 2, [1, 1, 0, 0]),    # top_k cuts first
])
def test_nucleus_set_by_hand(top_p, top_k, kept):
    assert nucleus_keep(P, top_p, top_k).long().tolist() == [kept]


def test_nucleus_set_in_vocabulary_order_and_stable_ties():
    p = torch.tensor([[0.125, 0.5, 0.125, 0.25], [0.25, 0.25, 0.25, 0.25]])
    assert nucleus_keep(p, 0.75, 25).long().tolist() == [[0, 1, 0, 1], [1, 1, 1, 0]]
    assert nucleus_keep(p, 0.5, 25).long().tolist() == [[0, 1, 0, 0], [1, 1, 0, 0]]  # ties: lower ids first


def test_repeats_count_only_the_window():
    history = torch.tensor([[1, 2, 3, 1, 5], [1, 1, 1, 1, 1]])
    assert repeats(history, torch.tensor([1, 1]), 3).tolist() == [1, 3]
    assert repeats(history, torch.tensor([1, 2]), 10).tolist() == [2, 0]
    assert repeats(history[:, :0], torch.tensor([1, 2]), 10).tolist() == [0, 0]


def _draws(p: torch.Tensor, history: list[int], n: int, **kw: object) -> torch.Tensor:
    """``n`` independent draws (one row and one generator each) from the same distribution and history."""
    logits = _logits(p).expand(n, -1)
    hist = torch.tensor(history, dtype=torch.long).expand(n, -1)
    return ras_sample(logits, hist, SpeechSampling(**kw), make_generators(range(n), "cpu"))


def test_nucleus_draw_frequencies():
    draws = _draws(P, [], 4000, top_p=0.75)
    assert set(draws.tolist()) == {0, 1}
    assert abs((draws == 0).float().mean() - 2 / 3) < 0.03  # kept masses .5 : .25


def test_repeated_draw_is_redrawn_from_the_full_softmax():
    # top_k 1: the nucleus draw is always 0; 0 was decoded recently, so every row re-draws.
    excluded = _draws(P, [3, 0], 4000, top_k=1)
    assert 0 not in excluded.tolist()
    assert abs((excluded == 1).float().mean() - 0.5) < 0.03  # .25 : .125 : .125 renormalised
    full = _draws(P, [3, 0], 4000, top_k=1, exclude_repeated=False)  # CosyVoice's first releases
    assert abs((full == 0).float().mean() - 0.5) < 0.03


@pytest.mark.parametrize("history,redrawn", [
    ([0, 9, 9, 9], False),     # one 0 in the window of 4: below the threshold 4 * 0.5 = 2
    ([0, 0, 9, 9], True),      # two: re-draw
    ([0, 0, 9, 9, 9, 9], False),  # two, but outside the window
])
def test_repetition_threshold_and_window(history, redrawn):
    p = torch.tensor([[0.5, 0.25, 0.125, 0.0625, 0.0625, 0, 0, 0, 0, 0.0]]).clamp(min=1e-30)
    draws = _draws(p, history, 200, top_k=1, win_size=4, tau_r=0.5)
    assert (draws != 0).all() if redrawn else (draws == 0).all()


def test_a_repeated_token_with_all_the_mass_stands():
    logits = torch.tensor([[0.0, float("-inf"), float("-inf")]])
    out = ras_sample(logits, torch.tensor([[0, 0]]), SpeechSampling(), make_generators([0], "cpu"))
    assert out.tolist() == [0]


def test_greedy_takes_the_argmax_and_draws_nothing():
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    out = ras_sample(torch.tensor([[0.1, 2.0, -1.0]]), torch.tensor([[1, 1]]), SpeechSampling(greedy=True), [g])
    assert out.tolist() == [1] and torch.equal(g.get_state(), state)


def _cosyvoice_row(scores: torch.Tensor, decoded: list[int], s: SpeechSampling, g: torch.Generator) -> int:
    """CosyVoice's ``ras_sampling`` for one row (Python loop), drawing with the same noise as the vectorised one."""
    V = scores.shape[0]
    noise1 = torch.empty(V).exponential_(1.0, generator=g)
    noise2 = torch.empty(V).exponential_(1.0, generator=g)
    values, order = scores.softmax(dim=0).sort(descending=True, stable=True)
    prob, indices, cum = [], [], 0.0
    for i in range(V):
        if cum < s.top_p and len(prob) < s.top_k:
            cum += float(values[i])
            prob.append(float(values[i]))
            indices.append(int(order[i]))
        else:
            break
    top = max(indices, key=lambda j: prob[indices.index(j)] / float(noise1[j]))
    if sum(t == top for t in decoded[-s.win_size:]) >= s.win_size * s.tau_r:
        scores = scores.clone()
        scores[top] = float("-inf")
        full = scores.softmax(dim=0)
        top = int(torch.where(full > 0, full / noise2, torch.full_like(full, -1.0)).argmax())
    return top


@pytest.mark.parametrize("top_p,top_k", [(0.8, 25), (0.5, 3), (0.95, 6)])
def test_vectorised_sampler_equals_cosyvoice_loop(top_p, top_k):
    s = SpeechSampling(top_p=top_p, top_k=top_k)
    g = torch.Generator().manual_seed(top_k)
    R, V = 16, 12
    logits = torch.randn(R, V, generator=g) * 2
    history = torch.randint(0, V, (R, 7), generator=g)
    got = ras_sample(logits, history, s, make_generators(range(R), "cpu"))
    refs = make_generators(range(R), "cpu")
    want = [_cosyvoice_row(logits[r], history[r].tolist(), s, refs[r]) for r in range(R)]
    assert got.tolist() == want
    # each row alone draws the same: a row's stream is its own
    for r in (0, 5):
        assert ras_sample(logits[r:r + 1], history[r:r + 1], s, make_generators([r], "cpu")).tolist() == [want[r]]


def test_mask_eos_only_in_rows_that_may_not_stop():
    logits = torch.zeros(2, 5)
    out = mask_eos(logits, torch.tensor([False, True]), 4)
    assert out[0, 4] == -math.inf and out[1, 4] == 0 and logits[0, 4] == 0 and (out[:, :4] == 0).all()


def test_bad_speech_sampling_settings():
    for bad in ({"top_p": 0.0}, {"top_p": 1.5}, {"top_k": 0}, {"win_size": 0}, {"tau_r": 0.0}, {"tau_r": 2.0}):
        with pytest.raises(ConfigError):
            SpeechSampling(**bad)


# ---------------------------------------------------------------------------------------------- in the loop
CFG = T2IConfig.preset("toy", n_layer=2, block_size=16)
K = 16


def _biased_model(bias: dict[int, float]) -> VivoModel:
    """A model whose speech head ignores its input and prefers the ids in ``bias`` (logit offsets)."""
    torch.manual_seed(0)
    backbone = T2IBackbone(CFG).eval()
    model = VivoModel(backbone, VivoConfig(speech_vocab=K, branch_layers=1, lora=LoRAConfig(r=2, alpha=2.0),
                                           max_speech_len=30))
    head = nn.Linear(model.branch.head.in_features, K + 1, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        for i, v in bias.items():
            head.bias[i] = v
    model.branch.head = head
    return model


def _feats() -> tuple[torch.Tensor, torch.Tensor]:
    L = CFG.cls_token_num
    feats = torch.randn(2, L, CFG.caption_dim, generator=torch.Generator().manual_seed(1))
    mask = torch.arange(L)[None, :] < torch.tensor([4, 9])[:, None]
    return left_pad_captions(feats * mask[..., None], mask)


@pytest.mark.parametrize("sampling", [SpeechSampling(greedy=True), SpeechSampling()], ids=["greedy", "ras"])
def test_eos_is_masked_before_min_len(sampling):
    model = _biased_model({K: 50.0})  # EOS always wins when allowed
    feats, mask = _feats()
    out = collect(generate(model, feats, mask, image=False, speech_sampling=sampling, min_len=[3, 7],
                           max_len=20, progress=False), 2)
    assert [len(c) for c in out.speech_codes] == [3, 7]
    assert out.speech_reasons == ["eos", "eos"]
    assert all(int(c.max()) < K for c in out.speech_codes)  # EOS is never part of the codes


def test_max_len_stops_and_ras_breaks_the_repetition():
    model = _biased_model({7: 50.0})  # code 7 always wins the nucleus draw
    feats, mask = _feats()
    greedy = collect(generate(model, feats, mask, image=False, speech_sampling=SpeechSampling(greedy=True),
                              min_len=0, max_len=[5, 9], progress=False), 2)
    assert [c.tolist() for c in greedy.speech_codes] == [[7] * 5, [7] * 9]
    assert greedy.speech_reasons == ["max_len", "max_len"]
    ras = collect(generate(model, feats, mask, image=False, min_len=[5, 9], max_len=[5, 9], progress=False), 2)
    for codes in ras.speech_codes:  # 7 first; then 7 is in the window every step and is re-drawn away
        assert codes[0] == 7 and 7 not in codes[1:].tolist() and len(codes) in (5, 9)


def test_default_length_rules_follow_the_caption_length():
    model = _biased_model({K: 50.0})
    model.cfg.min_len_ratio, model.cfg.max_len_ratio = 0.5, 1.0
    feats, mask = _feats()  # 4 and 9 valid caption tokens -> min_len 2 and 4, EOS right after
    out = collect(generate(model, feats, mask, image=False, progress=False), 2)
    assert [len(c) for c in out.speech_codes] == [2, 4]
    model.cfg.min_len_ratio = 1.0  # min_len = max_len: never EOS, stopped by the cap
    out = collect(generate(model, feats, mask, image=False, progress=False), 2)
    assert [len(c) for c in out.speech_codes] == [4, 9] and out.speech_reasons == ["max_len", "max_len"]
