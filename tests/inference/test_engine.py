"""The generation engine: batched == one-by-one, seeds, stop conditions, CFG against a direct computation,
cache continuation across an image, and clear errors."""

import pytest
import torch
from tinyparts import biased, tiny_decoder, tiny_text_and_layout

from aromni.errors import AromniError, InputError
from aromni.inference.cfg import cfg_contexts, mix_cfg_logits
from aromni.inference.engine import NO_TOKEN, Engine
from aromni.inference.options import DecodeOptions, ImageSampling, TextSampling

N_IMAGE = 6


@pytest.fixture(scope="module")
def layout():
    return tiny_text_and_layout(16, 24)[1]


def text_ids(layout, *ks):
    return [int(layout.text_ids[k]) for k in ks]


def prompts_of(layout):
    return [[layout.bos, *text_ids(layout, 1, 2, 3, 4, 5, 6)], [layout.bos, *text_ids(layout, 9)],
            [layout.bos, *text_ids(layout, 7, 8, 30)]]


def greedy(**kw):
    return DecodeOptions(text=TextSampling(greedy=True), image=ImageSampling(greedy=True, **kw.pop("image", {})),
                         image_tokens=N_IMAGE, **kw)


@pytest.mark.parametrize("cfg", [False, True])
def test_greedy_batched_equals_one_by_one(layout, cfg):
    # Boosts make the random model open images and speech spans and stop at varied points.
    model = biased(layout, {"boi": 10.0, "boa": 7.0, "eoa": 9.0, "eos": 5.0, "speech": 1.0}, seed=3)
    eng = Engine(model, layout)
    # Greedy by default, but the official switch samples after <eoa>: per-row seeds keep rows comparable.
    opts = greedy(max_new_tokens=40, image={"cfg": cfg}, seed=11)
    prompts = prompts_of(layout)
    batched = eng.run(prompts, opts)
    alone = [eng.run([p], opts.replace(seed=[11 + b]))[0] for b, p in enumerate(prompts)]
    assert [g.tokens for g in batched] == [g.tokens for g in alone]
    assert [g.stop_reason for g in batched] == [g.stop_reason for g in alone]
    assert any(layout.boi in g.tokens for g in batched), "the test should exercise image spans"
    if not cfg:
        assert any(layout.boa in g.tokens for g in batched), "the test should exercise speech spans"


def test_seeds_reproduce_and_rows_are_independent_of_the_batch(layout):
    eng = Engine(tiny_decoder(layout, seed=1), layout, image_tokens=N_IMAGE)
    prompts = prompts_of(layout)
    opts = DecodeOptions(max_new_tokens=30, seed=7, image=ImageSampling(cfg=False))
    a = [g.tokens for g in eng.run(prompts, opts)]
    b = [g.tokens for g in eng.run(prompts, opts)]
    c = [g.tokens for g in eng.run(prompts, opts.replace(seed=8))]
    assert a == b
    assert a != c
    # row 0 of a batch with seed s is the request alone with seed s (per-row generators)
    assert eng.run(prompts[:1], opts)[0].tokens == a[0]


def test_stop_reasons(layout):
    p = [prompts_of(layout)[0]]
    eos = Engine(biased(layout, {"eos": 50.0}), layout)
    g = eos.run(p, greedy())[0]
    assert g.tokens == [layout.eos] and g.stop_reason == "eos"
    eom = Engine(biased(layout, {"eom": 50.0}), layout)
    assert eom.run(p, greedy(extra_eos=("eom",)))[0].stop_reason == "eom"
    assert eom.run(p, greedy(max_new_tokens=5))[0].stop_reason == "max_new_tokens"  # eom is no stop token here
    never = Engine(biased(layout, {"eos": -50.0, "eom": -50.0, "boi": -50.0}), layout)
    g = never.run(p, greedy(max_new_tokens=9))[0]
    assert len(g.tokens) == 9 and g.stop_reason == "max_new_tokens"
    g = never.run(p, greedy(max_new_tokens=100, max_seq_len=12))[0]
    assert len(p[0]) + len(g.tokens) == 12 and g.stop_reason == "max_seq_len"


def test_steps_stream_tokens_and_mark_finished_rows(layout):
    eng = Engine(biased(layout, {"eos": -50.0, "boi": -50.0}), layout)
    stream = eng.generate(prompts_of(layout)[:2], greedy(max_new_tokens=4))
    steps = list(stream)
    assert len(steps) == 4 and all(len(s.tokens) == 2 and NO_TOKEN not in s.tokens for s in steps)
    assert steps[-1].finished == [True, True] and steps[0].finished == [False, False]
    assert [s.tokens[0] for s in steps] == stream.results[0].tokens


def direct_cfg_codes(model, layout, context, n, g_txt, g_img):
    """Greedy CFG image codes computed with three cache-free forwards per step (the reference)."""
    rows = cfg_contexts([context], layout)
    codes = []
    with torch.no_grad():
        for _ in range(n):
            logits = torch.cat([model(torch.tensor([r]))[:, -1] for r in rows])
            mixed = mix_cfg_logits(logits, g_txt, g_img)[0]
            mixed[~layout.mask("image")] = float("-inf")
            tok = int(mixed.argmax())
            codes.append(tok)
            rows = [r + [tok] for r in rows]
    return codes


@pytest.mark.parametrize("scales", [(3.07, 1.15), (1.0, 2.0), (0.5, 1.32)])
def test_cfg_equals_three_direct_forwards(layout, scales):
    model = tiny_decoder(layout, seed=5)
    eng = Engine(model, layout)
    # An image in the context makes the image-conditioned row differ from the unconditioned one.
    img = layout.image.to_ids([1, 5, 2, 2, 9, 0])
    prompt = [layout.bos, *text_ids(layout, 3, 4), layout.boi, *img, layout.eoi, *text_ids(layout, 5), layout.boi]
    opts = greedy(image={"guidance_scale_text": scales[0], "guidance_scale_image": scales[1]}, allow_text=False)
    g = eng.run([prompt], opts)[0]
    assert g.tokens[-1] == layout.eoi and g.stop_reason == "image"
    assert g.tokens[:-1] == direct_cfg_codes(model, layout, prompt, N_IMAGE, *scales)


def test_cfg_with_unit_scales_equals_one_row(layout):
    eng = Engine(tiny_decoder(layout, seed=6), layout)
    prompt = [layout.bos, *text_ids(layout, 3, 4, 5)]
    one_row = eng.run([prompt], greedy(allow_text=False, image={"cfg": False}))[0].tokens
    unit = eng.run([prompt], greedy(allow_text=False, image={"guidance_scale_text": 1.0,
                                                             "guidance_scale_image": 1.0}))[0].tokens
    assert one_row == unit and len(unit) == N_IMAGE + 1


@pytest.mark.parametrize("batch", [1, 2])
def test_text_after_a_cfg_image_continues_the_context(layout, batch):
    # After the CFG phase the main cache is continued (batch 1) or rebuilt (rows out of step): either way the
    # text after <eoi> must equal a fresh generation from the context up to <eoi>.
    model = biased(layout, {"boi": 10.0, "eos": -2.0}, seed=2)
    eng = Engine(model, layout)
    prompts = prompts_of(layout)[:batch]
    opts = greedy(max_new_tokens=3 * N_IMAGE)
    results = eng.run(prompts, opts)
    assert layout.eoi in results[0].tokens, "the boost should open an image"
    for p, g in zip(prompts, results):
        if layout.eoi not in g.tokens:
            continue
        cut = g.tokens.index(layout.eoi) + 1
        rest = eng.run([p + g.tokens[:cut]], opts.replace(max_new_tokens=opts.max_new_tokens - cut))[0]
        assert rest.tokens == g.tokens[cut:]


def test_bad_prompts_fail_clearly(layout):
    eng = Engine(tiny_decoder(layout), layout, image_tokens=N_IMAGE)
    with pytest.raises(InputError, match="context holds"):
        eng.generate([[layout.bos] * (eng.max_seq_len + 1)])
    with pytest.raises(InputError, match="non-empty"):
        eng.generate([])
    with pytest.raises(InputError, match="not integer"):
        eng.generate([["a", "b"]])
    with pytest.raises(InputError, match="outside"):
        eng.generate([[layout.vocab_size + 3]])
    with pytest.raises(InputError, match="to finish its image"):
        eng.generate([[layout.bos]], DecodeOptions(allow_text=False, max_new_tokens=3))


def test_a_newer_generation_interrupts_an_older_one(layout):
    eng = Engine(tiny_decoder(layout), layout, image_tokens=N_IMAGE)
    first = iter(eng.generate(prompts_of(layout)[:1], greedy(max_new_tokens=10)))
    next(first)
    eng.run(prompts_of(layout)[1:2], greedy(max_new_tokens=3))
    with pytest.raises(AromniError, match="interrupted"):
        next(first)
