"""Fuzz: prompts and token ids through ``aromni tts --text``, ``aromni t2i --text`` and the API (tts, t2i, chat,
generate): control characters, lone surrogates, 1 MB strings, empty strings, special-token look-alikes, non-str
types, and token-id lists out of range, negative, float or huge. Fixed corpora plus hypothesis examples (one
fresh sandbox per example)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fuzzparts import MAX_NEW, task_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aromni.inference.options import DecodeOptions

FAMILY = "prompts"

OPTS = {"max_new_tokens": MAX_NEW, "seed": 0}
#: T2I needs room for a whole image (64 codes + markers) or it is refused up front.
T2I_NEW = 70
T2I_OPTS = {"max_new_tokens": T2I_NEW, "seed": 0, "image": {"cfg": False}}

MB = 1 << 20
TEXTS = [
    ("plain", "a red circle", "ok"),
    ("empty", "", "error"),
    ("space", " ", "any"),
    ("newlines", "\n\n\r\n\t\n", "any"),
    ("nul", "\x00", "any"),
    ("control_chars", "".join(chr(c) for c in range(32)) + "\x7f", "any"),
    ("ansi_escape", "\x1b[31mred\x1b[0m \x1b]0;title\x07", "any"),
    ("lone_high_surrogate", "abc\ud800def", "any"),
    ("lone_low_surrogate", "\udfff", "any"),
    ("surrogateescape_bytes", b"caf\xe9 \xff\xfe".decode("utf-8", "surrogateescape"), "any"),
    ("bidi_zero_width", "\u202eevil\u202c\u200b\u200d\ufeff", "any"),
    ("combining_storm", "e" + "\u0301" * 2000, "any"),
    ("emoji", "\U0001f600\U0001f44d\U0001f3fd" * 20, "any"),
    ("special_token_lookalikes", "<s></s><boi><eoi><boa><eoa><eoh><eom><pad> USER: GPT:", "any"),
    ("format_braces", "{0} {text} %s %(x)s {{}}", "any"),
    ("long_10k", "word " * 2000, "any"),
    ("one_megabyte", "a" * MB, "error"),
]
#: 1 MB of two- and three-byte characters: slow to tokenize, so only through two entry points.
MB_UNICODE = "\u00e9\u4e2d" * (MB // 2)
TEXT_IDS = [t[0] for t in TEXTS]


def _ok_speech(out) -> None:
    for o in out if isinstance(out, list) else [out]:
        assert o.audio.ndim == 1 and torch.isfinite(o.audio).all()


def _ok_image(out) -> None:
    for o in out if isinstance(out, list) else [out]:
        assert o.image.size[0] > 0


def _ok_text(out) -> None:
    assert isinstance(out.text, str)


def _tts_expect(expect: str) -> str:
    # The random model can refuse to speak (no speech tokens) even with --force-speech; only errors are sure.
    return "error" if expect == "error" else "any"


# ------------------------------------------------------------------------------------------------ fixed corpus
@pytest.mark.parametrize("name, text, expect", TEXTS, ids=TEXT_IDS)
def test_cli_tts_text(case, fuzz_bundle, name, text, expect):
    case.cli(["tts", "--text", text, "--out", str(case.out / "x.wav"), "--force-speech", *task_args(fuzz_bundle)],
             expect=_tts_expect(expect))


@pytest.mark.parametrize("name, text, expect", TEXTS, ids=TEXT_IDS)
def test_cli_t2i_text(case, fuzz_bundle, name, text, expect):
    case.cli(["t2i", "--text", text, "--out", str(case.out / "x.png"), "--no-cfg",
              *task_args(fuzz_bundle, T2I_NEW)], expect=expect)


@pytest.mark.parametrize("name, text, expect", TEXTS, ids=TEXT_IDS)
def test_api_tts_text(case, fuzz_model, name, text, expect):
    case.api(lambda: fuzz_model.tts(text, force_speech=True, options=OPTS), expect=_tts_expect(expect),
             check=_ok_speech)


@pytest.mark.parametrize("name, text, expect", TEXTS, ids=TEXT_IDS)
def test_api_t2i_text(case, fuzz_model, name, text, expect):
    case.api(lambda: fuzz_model.t2i(text, options=T2I_OPTS), expect=expect, check=_ok_image)


@pytest.mark.parametrize("name, text, expect", TEXTS, ids=TEXT_IDS)
def test_api_chat_text(case, fuzz_model, name, text, expect):
    session = fuzz_model.chat(options=OPTS)
    case.api(lambda: session.send(text=text), expect=expect, check=_ok_text)


@pytest.mark.parametrize("name", ["plain", "lone_high_surrogate", "control_chars", "one_megabyte"])
def test_cli_tts_instruction(case, fuzz_bundle, name):
    _, text, expect = TEXTS[TEXT_IDS.index(name)]
    case.cli(["tts", "--text", "hello", "--instruction", text, "--out", str(case.out / "x.wav"), "--force-speech",
              *task_args(fuzz_bundle)], expect=_tts_expect(expect))


def test_cli_tts_one_megabyte_unicode(case, fuzz_bundle):
    case.cli(["tts", "--text", MB_UNICODE, "--out", str(case.out / "x.wav"), *task_args(fuzz_bundle)],
             expect="error")


def test_api_chat_one_megabyte_unicode(case, fuzz_model):
    session = fuzz_model.chat(options=OPTS)
    case.api(lambda: session.send(text=MB_UNICODE), expect="error", check=_ok_text)


def test_cli_tts_existing_output_not_overwritten(case, fuzz_bundle):
    target = case.protect(case.out / "keep.wav")
    case.cli(["tts", "--text", "hello", "--out", str(target), "--force-speech", *task_args(fuzz_bundle)],
             expect="error")


def test_cli_t2i_existing_output_not_overwritten(case, fuzz_bundle):
    target = case.protect(case.out / "keep.png")
    case.cli(["t2i", "--text", "hello", "--out", str(target), *task_args(fuzz_bundle, T2I_NEW)], expect="error")


@pytest.mark.parametrize("suffix", [".mp3", "", ".PNG.txt", "/"])
def test_cli_tts_bad_output_name(case, fuzz_bundle, suffix):
    case.cli(["tts", "--text", "hi", "--out", str(case.out / "x") + suffix, *task_args(fuzz_bundle)], expect="error")


def test_cli_t2i_output_is_directory(case, fuzz_bundle):
    d = case.out / "dir.png"
    d.mkdir(parents=True)
    case.cli(["t2i", "--text", "hi", "--out", str(d), *task_args(fuzz_bundle, T2I_NEW)], expect="error")


# ------------------------------------------------------------------------------------------------ non-str types
NON_STR = [
    ("none", None), ("int", 1), ("float_nan", float("nan")), ("bytes", b"hello"), ("bytearray", bytearray(b"hi")),
    ("list_mixed", ["a", 1]), ("empty_list", []), ("nested_list", [["a"]]), ("dict", {"text": "a"}),
    ("object", object()), ("numpy_str_array", np.array(["a", "b"])), ("tensor", torch.tensor([1, 2])),
]
NON_STR_IDS = [n[0] for n in NON_STR]


@pytest.mark.parametrize("name, value", NON_STR, ids=NON_STR_IDS)
def test_api_tts_non_str(case, fuzz_model, name, value):
    case.api(lambda: fuzz_model.tts(value, force_speech=True, options=OPTS), expect="error", check=_ok_speech)


@pytest.mark.parametrize("name, value", NON_STR, ids=NON_STR_IDS)
def test_api_t2i_non_str(case, fuzz_model, name, value):
    case.api(lambda: fuzz_model.t2i(value, options=T2I_OPTS), expect="error", check=_ok_image)


@pytest.mark.parametrize("name, value", [n for n in NON_STR if n[0] != "none"],
                         ids=[i for i in NON_STR_IDS if i != "none"])
def test_api_chat_non_str(case, fuzz_model, name, value):
    session = fuzz_model.chat(options=OPTS)
    case.api(lambda: session.send(text=value), expect="error", check=_ok_text)


@pytest.mark.parametrize("name, value", [("int", 5), ("bytes", b"x"), ("list", ["x"])], ids=["int", "bytes", "list"])
def test_api_tts_instruction_non_str(case, fuzz_model, name, value):
    case.api(lambda: fuzz_model.tts("hello", instruction=value, force_speech=True, options=OPTS), expect="error",
             check=_ok_speech)


def test_api_tts_batch_of_texts(case, fuzz_model):
    case.api(lambda: fuzz_model.tts(["hello", "\x00", "\ud800"], force_speech=True, options=OPTS), expect="any",
             check=_ok_speech)


# ------------------------------------------------------------------------------------------------ token ids
def _drain(model, prompts, **opts):
    stream = model.generate(prompts, DecodeOptions(max_new_tokens=MAX_NEW, seed=0, **opts))
    for _ in stream:
        pass
    return stream.results


V = 512  # the tiny layout's vocabulary
TOKENS = [
    ("valid", [[1, 20, 30, 40]], "ok"),
    ("valid_batch", [[1, 20], [1, 21, 22, 23]], "ok"),
    ("numpy_ints", [np.array([1, 20, 30], dtype=np.int64)], "any"),
    ("tensor_row", [torch.tensor([1, 20, 30])], "ok"),
    ("tensor_2d", torch.tensor([[1, 20, 30]]), "any"),
    ("numpy_2d", np.array([[1, 20, 30]]), "any"),
    ("empty_batch", [], "error"),
    ("empty_prompt", [[]], "error"),
    ("negative", [[1, -1]], "error"),
    ("out_of_range", [[1, V]], "error"),
    ("huge", [[1, 2**70]], "error"),
    ("int64_max", [[1, 2**63 - 1]], "error"),
    ("float_ids", [[1.0, 20.0]], "error"),
    ("float_nan", [[1, float("nan")]], "error"),
    ("bool_ids", [[True, False]], "error"),
    ("str_ids", [["1", "2"]], "error"),
    ("string_prompt", "hello", "error"),
    ("bytes_prompt", [b"\x01\x02"], "error"),
    ("flat_ints", [1, 2, 3], "error"),
    ("none", None, "error"),
    ("none_row", [None], "error"),
    ("dict", {"ids": [1, 2]}, "error"),
    ("longer_than_context", [[1] + [20] * 600], "error"),
    ("exactly_context", [[20] * V], "error"),
    ("context_minus_one", [[20] * (V - 1)], "any"),
    ("inside_image_span", [[1, 3] + [400] * 10], "any"),
    ("only_special", [[2, 2, 2]], "any"),
]
TOKEN_IDS = [t[0] for t in TOKENS]


@pytest.mark.parametrize("name, prompts, expect", TOKENS, ids=TOKEN_IDS)
def test_api_generate_token_ids(case, fuzz_model, name, prompts, expect):
    case.api(lambda: _drain(fuzz_model, prompts), expect=expect)


@pytest.mark.parametrize("seed, expect", [(-1, "any"), (2**70, "any"), ("abc", "error"), ([1, 2], "error"),
                                          (1.5, "any")], ids=["neg", "huge", "str", "too_many", "float"])
def test_api_generate_seed(case, fuzz_model, seed, expect):
    case.api(lambda: fuzz_model.engine.run([[1, 20, 30]], DecodeOptions(max_new_tokens=MAX_NEW, seed=seed)),
             expect=expect)


# ------------------------------------------------------------------------------------------------ hypothesis
def _with_surrogates() -> st.SearchStrategy[str]:
    chars = st.one_of(st.integers(0, 0x7F), st.integers(0xD800, 0xDFFF), st.integers(0x80, 0x10FFFF))
    return st.lists(chars, min_size=1, max_size=60).map(lambda cs: "".join(map(chr, cs)))


#: Non-empty (the empty prompt is a fixed case above; hypothesis would shrink every failure to it).
ANY_TEXT = st.one_of(st.text(min_size=1, max_size=120), _with_surrogates())
HYP = settings(max_examples=14, deadline=None, database=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@HYP
@given(text=ANY_TEXT)
def test_hyp_cli_tts(new_case, fuzz_bundle, text):
    with new_case() as case:
        case.cli(["tts", "--text", text, "--out", str(case.out / "x.wav"), "--force-speech",
                  *task_args(fuzz_bundle)], expect="any")


@HYP
@given(text=ANY_TEXT)
def test_hyp_cli_t2i(new_case, fuzz_bundle, text):
    with new_case() as case:
        case.cli(["t2i", "--text", text, "--out", str(case.out / "x.png"), "--no-cfg",
                  *task_args(fuzz_bundle, T2I_NEW)], expect="any")


@HYP
@given(text=ANY_TEXT)
def test_hyp_api_tts(new_case, fuzz_model, text):
    with new_case() as case:
        case.api(lambda: fuzz_model.tts(text, force_speech=True, options=OPTS),
                 expect="any", check=_ok_speech)


@HYP
@given(text=ANY_TEXT)
def test_hyp_api_chat(new_case, fuzz_model, text):
    with new_case() as case:
        session = fuzz_model.chat(options=OPTS)
        case.api(lambda: session.send(text=text), expect="any", check=_ok_text)


@HYP
@given(prompt=st.lists(st.one_of(st.integers(-5, V + 5), st.integers(-(2**80), 2**80)), max_size=20))
def test_hyp_api_generate(new_case, fuzz_model, prompt):
    bad = not prompt or any(not 0 <= t < V for t in prompt)
    with new_case() as case:
        case.api(lambda: _drain(fuzz_model, [prompt]), expect="error" if bad else "any")
