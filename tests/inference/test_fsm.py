"""The modality state machine: grammar properties under random logits (hypothesis), the boi budget rule, the
official greedy/sampling switch, and prompt-state detection."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aromni.errors import InputError
from aromni.inference.fsm import ModalityFSM, State
from aromni.inference.options import DecodeOptions, TextSampling
from aromni.inference.sampling import exponential_noise, make_generators, select_tokens
from aromni.vocab.layout import VocabLayout

LAYOUT = VocabLayout.compact(n_text=20, n_image=8, n_speech=8, pad_to_multiple=1)


def simulate(fsm, prompts, budget, seed, marker_boost):
    """Sample from random logits through the FSM (masks, budget, transitions) like the engine does."""
    B, V = len(prompts), LAYOUT.vocab_size
    rows = fsm.initial(prompts)
    left = torch.full((B,), budget)
    gens = make_generators([seed + b for b in range(B)], "cpu")
    g = torch.Generator().manual_seed(seed)
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool)
    markers = [LAYOUT.boi, LAYOUT.boa, LAYOUT.eoa, LAYOUT.eos, LAYOUT.eoi]
    for _ in range(budget):
        logits = torch.randn(B, V, generator=g) * 2
        logits[:, markers] += marker_boost
        logits = logits.masked_fill(~fsm.allowed(rows, left), float("-inf"))
        tok = select_tokens(logits, fsm.greedy_rows(rows), exponential_noise(gens, V, "cpu"))
        active = ~done
        rows = fsm.advance(rows, tok, active)
        left = left - active.long()
        for b in range(B):
            if active[b]:
                out[b].append(int(tok[b]))
        done |= active & ((rows.state == State.DONE) | (left <= 0))
        if done.all():
            break
    return out


def check_grammar(tokens, n_image, opts, stops):
    """Raise AssertionError if ``tokens`` (generated after a prompt in text state) break the grammar."""
    L = LAYOUT
    state, count = "text", 0
    for i, t in enumerate(tokens):
        is_img, is_sp = bool(L.image.contains(t)), bool(L.speech.contains(t))
        if state == "text":
            assert not is_img, f"image code {t} outside an image span at {i}"
            assert not is_sp or opts.bare_speech, f"speech code {t} outside <boa> at {i}"
            assert t not in (L.eoi, L.eoa, L.pad), f"stray {t} at {i}"
            if t == L.boi:
                assert opts.allow_image
                state, count = "image", 0
            elif t == L.boa:
                assert opts.allow_speech
                state = "speech"
            elif t in stops:
                assert i == len(tokens) - 1, "tokens after a stop token"
        elif state == "image":
            if count < n_image:
                assert is_img, f"non-image token {t} inside an image span at {i}"
                count += 1
            else:
                assert t == L.eoi, f"image span of {n_image} codes not closed by <eoi> at {i}"
                state = "text"
        else:
            assert is_sp or t == L.eoa, f"token {t} inside a speech span at {i}"
            if t == L.eoa:
                state = "text"
    assert state != "image", "an image span was cut short although <boi> is only allowed when it fits"


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n_image=st.integers(1, 6), budget=st.integers(1, 30),
       bare_speech=st.booleans(), allow_image=st.booleans(), allow_speech=st.booleans(),
       boost=st.floats(0.0, 6.0), extra_eom=st.booleans())
def test_generated_sequences_follow_the_grammar(seed, n_image, budget, bare_speech, allow_image, allow_speech,
                                                boost, extra_eom):
    opts = DecodeOptions(bare_speech=bare_speech, allow_image=allow_image, allow_speech=allow_speech,
                         extra_eos=("eom",) if extra_eom else ())
    fsm = ModalityFSM(LAYOUT, opts, n_image, "cpu")
    prompts = [[LAYOUT.bos], [LAYOUT.bos, int(LAYOUT.text_ids[3])]]
    for tokens in simulate(fsm, prompts, budget, seed, boost):
        assert 1 <= len(tokens) <= budget
        check_grammar(tokens, n_image, opts, set(fsm.stop_ids))


def test_boi_needs_room_for_the_whole_image():
    fsm = ModalityFSM(LAYOUT, DecodeOptions(), 5, "cpu")
    rows = fsm.initial([[LAYOUT.bos]] * 3)
    allowed = fsm.allowed(rows, torch.tensor([6, 7, 100]))  # boi + 5 codes + eoi = 7 tokens
    assert allowed[:, LAYOUT.boi].tolist() == [False, True, True]


def test_image_span_forces_exactly_n_codes_then_eoi():
    n = 3
    fsm = ModalityFSM(LAYOUT, DecodeOptions(), n, "cpu")
    rows = fsm.initial([[LAYOUT.bos, LAYOUT.boi]])
    assert rows.state.tolist() == [State.IMAGE] and rows.image_left.tolist() == [n]
    code = int(LAYOUT.image.to_ids([0])[0])
    for _ in range(n):
        allowed = fsm.allowed(rows, torch.tensor([100]))[0]
        assert allowed.nonzero().flatten().tolist() == LAYOUT.image.to_ids(list(range(8)))
        rows = fsm.advance(rows, torch.tensor([code]), torch.tensor([True]))
    assert rows.state.tolist() == [State.IMAGE_END]
    assert fsm.allowed(rows, torch.tensor([100]))[0].nonzero().flatten().tolist() == [LAYOUT.eoi]
    rows = fsm.advance(rows, torch.tensor([LAYOUT.eoi]), torch.tensor([True]))
    assert rows.state.tolist() == [State.TEXT]


def test_text_disabled_stops_after_the_image():
    fsm = ModalityFSM(LAYOUT, DecodeOptions(allow_text=False), 1, "cpu")
    rows = fsm.initial([[LAYOUT.bos, LAYOUT.boi, int(LAYOUT.image.to_ids([2])[0])]])
    assert rows.state.tolist() == [State.IMAGE_END]
    rows = fsm.advance(rows, torch.tensor([LAYOUT.eoi]), torch.tensor([True]))
    assert rows.state.tolist() == [State.DONE]


def test_prompt_states():
    fsm = ModalityFSM(LAYOUT, DecodeOptions(), 4, "cpu")
    img = LAYOUT.image.to_ids([1, 2])
    sp = LAYOUT.speech.to_ids([1, 2])
    rows = fsm.initial([[LAYOUT.bos, LAYOUT.boi, *img], [LAYOUT.bos, LAYOUT.boa, *sp],
                        [LAYOUT.bos, LAYOUT.boa, *sp, LAYOUT.eoa], [LAYOUT.bos]])
    assert rows.state.tolist() == [State.IMAGE, State.SPEECH, State.TEXT, State.TEXT]
    assert rows.image_left.tolist()[0] == 2
    with pytest.raises(InputError, match="image span"):
        fsm.initial([[LAYOUT.bos, LAYOUT.boi, *(img * 3)]])


def official_mode(default, prev_tokens):
    """FiniteTransTokenSelector semantics, with a fresh selector after each image."""
    mode, modes = default, []
    for prev in prev_tokens:
        if prev in (LAYOUT.ins, LAYOUT.boa):
            mode = True
        elif prev in (LAYOUT.res, LAYOUT.eoa):
            mode = False
        elif prev == LAYOUT.eoi:
            mode = default
        modes.append(mode)
    return modes


@settings(max_examples=40, deadline=None)
@given(default=st.booleans(), seq=st.lists(st.sampled_from(["ins", "res", "boa", "eoa", "eoi", "text"]),
                                           min_size=1, max_size=12))
def test_greedy_switch_follows_ins_res_boa_eoa(default, seq):
    ids = [int(LAYOUT.text_ids[0]) if s == "text" else LAYOUT.special_id(s) for s in seq]
    fsm = ModalityFSM(LAYOUT, DecodeOptions(text=TextSampling(greedy=default)), 2, "cpu")
    # the prompt's last token counts as the first "prev", like the official selector
    rows = fsm.initial([[LAYOUT.bos, ids[0]]])
    got = [bool(rows.greedy[0])]
    for t in ids[1:]:
        rows = fsm.advance(rows, torch.tensor([t]), torch.tensor([True]))
        got.append(bool(rows.greedy[0]))
    assert got == official_mode(default, ids)


def test_image_rows_use_the_image_greedy_flag():
    opts = DecodeOptions(text=TextSampling(greedy=True))
    fsm = ModalityFSM(LAYOUT, opts, 2, "cpu")
    rows = fsm.initial([[LAYOUT.bos, LAYOUT.boi], [LAYOUT.bos]])
    assert fsm.greedy_rows(rows).tolist() == [False, True]
