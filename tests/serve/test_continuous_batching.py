"""Continuous batching on the shipped toy bundle: a request's tokens are identical whether it runs alone or joins
a busy batch (greedy, seeded sampling, CFG images), rows are freed on cancel within one step, errors stay with
their requests."""

from __future__ import annotations

import threading
import time

import pytest
import torch

import aromni
from aromni.errors import InputError
from aromni.inference.engine import Engine
from aromni.serve.batching import BatchingEngine, RequestCancelled, enable_batching
from aromni.vocab.tasks import CHAT, T2I, TTS
from aromni.vocab.templates import task_conversation

TEXTS = ["a big red circle on the left", "what colour is the square", "hello there", "the green star is small"]


@pytest.fixture(scope="module")
def model():
    return aromni.load("toy", dtype="float32")


@pytest.fixture()
def engine(model):
    eng = BatchingEngine(model.engine.decoder, model.layout, image_tokens=model.engine.image_tokens, max_rows=8)
    yield eng
    eng.close()


def prompt(model, task, text):
    return model.encode(task_conversation(task, style=model.style.name, text=text))


def chat_prompt(model, text):
    session = model.chat()
    return session.build_prompt(session.user_turn_ids(text=text))[0]


def run_concurrently(engine, jobs):
    """Run ``[(prompt, options)]`` as concurrent requests; token lists in job order."""
    out = [None] * len(jobs)
    errors = []

    def go(i, p, o):
        try:
            out[i] = engine.run([p], o)[0].tokens
        except Exception as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=go, args=(i, p, o)) for i, (p, o) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    return out


def test_greedy_alone_equals_busy_and_the_plain_engine(model, engine):
    opts = model.options(TTS).updated(max_new_tokens=50)
    prompts = [prompt(model, TTS, t) for t in TEXTS]
    plain = Engine(model.engine.decoder, model.layout, image_tokens=model.engine.image_tokens)
    reference = [plain.run([p], opts)[0].tokens for p in prompts]
    alone = [engine.run([p], opts)[0].tokens for p in prompts]
    before = engine.stats().steps
    busy = run_concurrently(engine, [(p, opts) for p in prompts])
    assert alone == busy
    assert alone == reference
    # Each request's first token comes from its prefill; the rest from decode steps, which they shared.
    assert engine.stats().steps - before < sum(len(t) - 1 for t in busy), "the requests should share steps"


def test_seeded_sampling_alone_equals_busy(model, engine):
    opts = model.options(CHAT).updated(max_new_tokens=40, seed=3, allow_image=False)
    prompts = [chat_prompt(model, t) for t in TEXTS]
    alone = [engine.run([p], opts)[0].tokens for p in prompts]
    busy = run_concurrently(engine, [(p, opts) for p in prompts] + [(prompts[0], opts.updated(seed=9))])
    assert busy[:4] == alone
    assert busy[4] != alone[0], "another seed should sample another reply"


def test_cfg_image_alone_equals_busy_and_borrows_two_rows(model, engine):
    t2i = model.options(T2I).updated(seed=5)
    tts = model.options(TTS).updated(max_new_tokens=60)
    images = [prompt(model, T2I, t) for t in TEXTS[:2]]
    speech = [prompt(model, TTS, t) for t in TEXTS[2:]]
    alone = [engine.run([p], t2i)[0].tokens for p in images]
    busy = run_concurrently(engine, [(p, t2i) for p in images] + [(p, tts) for p in speech])
    assert busy[:2] == alone
    n = model.engine.image_tokens
    assert all(sum(bool(model.layout.image.contains(t)) for t in toks) == n for toks in alone)
    s = engine.stats()
    assert (s.rows_busy, s.active, s.finished) == (0, 0, 6)


def test_a_request_joining_mid_generation_is_unaffected(model, engine):
    opts = model.options(TTS).updated(max_new_tokens=60)
    a_prompt, b_prompt = prompt(model, TTS, TEXTS[0]), prompt(model, TTS, TEXTS[3])
    a_alone = engine.run([a_prompt], opts)[0].tokens
    b_alone = engine.run([b_prompt], opts)[0].tokens
    a = engine.generate([a_prompt], opts)
    it = iter(a)
    got = [next(it).tokens[0] for _ in range(10)]  # A is mid-reply when B joins
    b_out = []
    t = threading.Thread(target=lambda: b_out.append(engine.run([b_prompt], opts)[0].tokens))
    t.start()
    got += [step.tokens[0] for step in it]
    t.join()
    assert got == a_alone
    assert b_out == [b_alone]


def test_cancel_frees_the_rows_within_one_step(model, engine):
    long = model.options(TTS).updated(max_new_tokens=200)
    # B keeps the batch stepping while A is cancelled.
    b = threading.Thread(target=lambda: engine.run([prompt(model, TTS, TEXTS[1])], long))
    a = engine.generate([prompt(model, T2I, TEXTS[0])], model.options(T2I).updated(seed=1))
    it = iter(a)
    for _ in range(3):
        next(it)
    b.start()
    it.close()  # what a server does when its client disconnects
    deadline = time.monotonic() + 30
    while engine.stats().rows_freed_cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    b.join()
    s = engine.stats()
    assert s.cancelled == 1 and s.rows_freed_cancelled == 3  # its row and the two CFG companions
    assert a.results[0].stop_reason == "cancelled"
    assert a.release_step - a.cancel_step <= 1
    assert s.rows_busy == 0


def test_max_active_one_serves_one_request_at_a_time(model):
    eng = BatchingEngine(model.engine.decoder, model.layout, image_tokens=model.engine.image_tokens,
                         max_rows=8, max_active=1)
    try:
        opts = model.options(TTS).updated(max_new_tokens=30)
        prompts = [prompt(model, TTS, t) for t in TEXTS[:3]]
        out = run_concurrently(eng, [(p, opts) for p in prompts])
        assert eng.stats().steps >= sum(len(t) for t in out) - len(out)  # no step was shared
        assert out == [eng.run([p], opts)[0].tokens for p in prompts]
    finally:
        eng.close()


def test_a_failing_step_fails_its_requests_and_the_engine_recovers(model, engine, monkeypatch):
    opts = model.options(TTS).updated(max_new_tokens=20)
    p = prompt(model, TTS, TEXTS[2])
    good = engine.run([p], opts)[0].tokens
    decoder = engine.decoder
    real = decoder.forward

    def broken(*args, **kwargs):
        if kwargs.get("row_pos") is not None:
            raise RuntimeError("simulated device failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(decoder, "forward", broken)
    with pytest.raises(RuntimeError, match="simulated device failure"):
        engine.run([p], opts)
    monkeypatch.setattr(decoder, "forward", real)
    assert engine.run([p], opts)[0].tokens == good
    assert engine.stats().failed == 1


def test_bad_requests_are_refused_before_any_compute(model):
    eng = BatchingEngine(model.engine.decoder, model.layout, image_tokens=model.engine.image_tokens, max_rows=2)
    try:
        p = prompt(model, TTS, TEXTS[0])
        with pytest.raises(InputError, match="one prompt per request"):
            eng.generate([p, p], model.options(TTS))
        with pytest.raises(InputError, match="needs 3 batch rows"):
            eng.generate([prompt(model, T2I, TEXTS[0])], model.options(T2I))
        with pytest.raises(InputError, match="max_rows"):
            BatchingEngine(model.engine.decoder, model.layout, max_rows=0)
    finally:
        eng.close()


def test_close_cancels_waiting_requests(model):
    eng = BatchingEngine(model.engine.decoder, model.layout, image_tokens=model.engine.image_tokens, max_rows=1)
    opts = model.options(TTS).updated(max_new_tokens=200)
    first = iter(eng.generate([prompt(model, TTS, TEXTS[0])], opts))
    next(first)
    eng.close()
    with pytest.raises(RequestCancelled):
        for _ in first:
            pass


def test_model_tasks_run_through_the_batching_engine(model):
    m = aromni.load("toy", dtype="float32")
    plain = m.tts(TEXTS[2])
    eng = enable_batching(m, max_rows=4)
    try:
        stream = m.tts(TEXTS[2], stream=True)
        streamed = torch.cat([c.audio for c in stream])
        assert stream.results[0].tokens == plain.tokens
        torch.testing.assert_close(streamed, plain.audio, rtol=0, atol=1e-6)
        assert m.asr(plain.audio, sample_rate=plain.sample_rate).text == model.asr(
            plain.audio, sample_rate=plain.sample_rate).text
        assert eng.stats().finished == 2
    finally:
        eng.close()


def test_decoding_only_the_busy_rows_gives_the_same_greedy_tokens(model, engine):
    fast = BatchingEngine(model.engine.decoder, model.layout, image_tokens=model.engine.image_tokens, max_rows=8,
                          batch_invariant=False)
    try:
        opts = model.options(TTS).updated(max_new_tokens=40)
        prompts = [prompt(model, TTS, t) for t in TEXTS]
        assert run_concurrently(fast, [(p, opts) for p in prompts]) == [engine.run([p], opts)[0].tokens
                                                                          for p in prompts]
        assert fast.run([prompts[0]], opts)[0].tokens == engine.run([prompts[0]], opts)[0].tokens
    finally:
        fast.close()


def test_the_compiled_batch_step_gives_the_same_tokens(model, engine):
    compiled = BatchingEngine(model.engine.decoder, model.layout, image_tokens=model.engine.image_tokens,
                              max_rows=8, compile=True)
    try:
        opts = model.options(TTS).updated(max_new_tokens=30)
        prompts = [prompt(model, TTS, t) for t in TEXTS[:3]]
        want = [engine.run([p], opts)[0].tokens for p in prompts]
        assert run_concurrently(compiled, [(p, opts) for p in prompts]) == want
        with torch._dynamo.config.patch(error_on_recompile=True):
            assert compiled.run([prompts[0]], opts)[0].tokens == want[0]
    finally:
        compiled.close()
