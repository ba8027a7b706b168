"""The compiled static decode step (``Engine(compile=True)``): the same greedy tokens as eager decoding, logits
within float tolerance, and no recompiles after the first generation (shapes never change)."""

from __future__ import annotations

import pytest
import torch
from tinyparts import biased, tiny_text_and_layout

from aromni.inference.engine import Engine, decode_one_token
from aromni.inference.options import DecodeOptions, ImageSampling, TextSampling

N_IMAGE = 6


@pytest.fixture(scope="module")
def layout():
    return tiny_text_and_layout(16, 24)[1]


@pytest.fixture(scope="module")
def model(layout):
    # Boosts make the random model open images and speech spans and stop at varied points.
    return biased(layout, {"boi": 10.0, "boa": 7.0, "eoa": 9.0, "eos": 5.0, "speech": 1.0}, seed=3)


def prompts_of(layout, extra=()):
    ids = [int(layout.text_ids[k]) for k in (1, 2, 3, 4, 5, 6, 7, 8, 9, 30, *extra)]
    return [[layout.bos, *ids[:6]], [layout.bos, ids[8]], [layout.bos, *ids[6:8], ids[9], *ids[10:]]]


def options(cfg: bool) -> DecodeOptions:
    return DecodeOptions(text=TextSampling(greedy=True), image=ImageSampling(greedy=True, cfg=cfg),
                         image_tokens=N_IMAGE, max_new_tokens=40, seed=11)


@pytest.mark.parametrize("cfg", [False, True])
def test_compiled_greedy_tokens_equal_eager_and_never_recompile(layout, model, cfg):
    eager = Engine(model, layout)
    compiled = Engine(model, layout, compile=True)
    opts = options(cfg)
    want = [g.tokens for g in eager.run(prompts_of(layout), opts)]
    assert [g.tokens for g in compiled.run(prompts_of(layout), opts)] == want
    assert any(layout.boi in t for t in want), "the test should exercise image spans"
    if not cfg:
        assert any(layout.boa in t for t in want), "the test should exercise speech spans"
    # Other prompt lengths, another image phase, the same batch size: the compiled step must be reused as is.
    with torch._dynamo.config.patch(error_on_recompile=True):
        again = [g.tokens for g in compiled.run(prompts_of(layout, extra=(11, 12)), opts)]
    assert again == [g.tokens for g in eager.run(prompts_of(layout, extra=(11, 12)), opts)]


def test_compiled_step_logits_match_the_eager_step(layout, model):
    compiled = Engine(model, layout, compile=True)
    tokens = torch.tensor([[layout.bos, 20, 21, 22, 23], [layout.bos, 30, 31, 32, 33]])
    got, want = [], []
    for step, out in ((compiled.decode, got), (lambda t, p: decode_one_token(model, t, p), want)):
        model.setup_caches(2, compiled.max_seq_len)
        model(tokens, input_pos=torch.arange(5))
        nxt = torch.tensor([40, 41])
        for pos in range(5, 9):
            out.append(step(nxt, pos))
            nxt = nxt + 1
    torch.testing.assert_close(torch.stack(got), torch.stack(want), rtol=1e-4, atol=1e-4)
