"""The public API on malformed input (issue #9): every mistake is one AromniError subclass naming the value and
the fix, valid-but-unusual input (stereo [C, T], int16 PCM, odd PIL modes) works, and saving never overwrites
silently."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from PIL import Image

import aromni
from aromni.errors import AromniError, CheckpointError, ConfigError, InputError
from aromni.inference import media
from aromni.inference.options import DecodeOptions, ImageSampling, TextSampling, task_options
from aromni.vocab.conversation import Conversation, ImageSegment, TextSegment, Turn

SR = 16000
SHORT = {"max_new_tokens": 3, "seed": 0}


def tone(seconds: float, rate: int = SR) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ audio arrays
@pytest.mark.parametrize("audio, match", [
    (np.full(SR // 4, np.nan, dtype=np.float32), "NaN or infinite samples"),
    (np.concatenate([tone(0.1), [np.inf]]).astype(np.float32), r"NaN or infinite samples \(first at sample 1600\)"),
    (None, "no audio given"),
    (0.5, "single number"),
    (np.float32(0.5), "single number"),
    (torch.tensor(0.5), "single number"),
    (True, "single number"),
    (tone(0.1).astype(np.complex64), "complex"),
    (torch.zeros(100, dtype=torch.complex64), "complex"),
    (np.zeros(0, dtype=np.float32), "empty waveform"),
    (np.zeros((2, 0), dtype=np.float32), "empty waveform"),
    (np.zeros((2, 2, 400), dtype=np.float32), "3 dimensions"),
    (np.array(["a", "b"]), "does not hold numbers"),
    (np.array([None, 1.0, "x"], dtype=object), "does not hold numbers"),
    (np.ones(400, dtype=bool), "booleans"),
    (np.ones(400, dtype=np.int64), "no PCM scale"),
    (b"RIFF....WAVE", "raw bytes"),
    ({"audio": [0.0]}, "got dict"),
    (tone(0.1)[:, None].repeat(2, axis=1), r"looks like \[samples, channels\]: pass audio.T"),
])
def test_asr_refuses_malformed_waveforms(tiny_model, audio, match):
    with pytest.raises(InputError, match=match):
        tiny_model.asr(audio, sample_rate=SR, options=SHORT)


@pytest.mark.parametrize("rate, match", [
    (0, "outside the supported"), (-16000, "outside the supported"), (7, "outside the supported"),
    (10**9, "outside the supported"), ("16k", "whole number of Hz, got '16k'"), ("16000", "whole number"),
    (float("nan"), "whole number"), (float("inf"), "whole number"), (8000.5, "whole number"),
    (True, "whole number"), (None, "needs its sample_rate"),
])
def test_asr_refuses_bad_sample_rates(tiny_model, rate, match):
    with pytest.raises(InputError, match=match):
        tiny_model.asr(tone(0.2), sample_rate=rate, options=SHORT)


def test_bad_sample_rate_is_refused_for_files_too(tiny_model, tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "a.wav", tone(0.2), SR)
    with pytest.raises(InputError, match="whole number"):
        tiny_model.asr(str(tmp_path / "a.wav"), sample_rate="16k", options=SHORT)
    assert isinstance(tiny_model.asr(str(tmp_path / "a.wav"), options=SHORT).text, str)


def _prompt(model, audio, rate):
    return model._task_prompt("asr", speech=media.audio_to_codes(model.speech, audio, rate))


def test_channels_first_stereo_is_the_mean_of_its_channels(tiny_model):
    left, right = tone(0.3), 0.5 * tone(0.3)[::-1].copy()
    stereo = np.stack([left, right])  # [C, T]
    assert _prompt(tiny_model, stereo, SR) == _prompt(tiny_model, (left + right) / 2, SR)
    assert _prompt(tiny_model, torch.from_numpy(stereo), SR) == _prompt(tiny_model, stereo, SR)
    out = tiny_model.asr(stereo, sample_rate=SR, options=SHORT)
    assert isinstance(out.text, str)


def test_integer_pcm_is_scaled_to_unit_range(tiny_model):
    x = tone(0.3)
    pcm16 = np.round(x * 32768).astype(np.int16)
    assert _prompt(tiny_model, pcm16, SR) == _prompt(tiny_model, pcm16.astype(np.float32) / 32768, SR)
    pcm32 = pcm16.astype(np.int32) * 65536
    assert _prompt(tiny_model, pcm32, SR) == _prompt(tiny_model, pcm16, SR)


def test_float_and_list_waveforms_still_work(tiny_model):
    x = tone(0.2)
    ref = _prompt(tiny_model, x, SR)
    assert _prompt(tiny_model, x.astype(np.float64), SR) == ref
    assert _prompt(tiny_model, [float(v) for v in x], SR) == ref
    assert _prompt(tiny_model, x, 16000.0) == ref
    outs = tiny_model.asr([x, x], sample_rate=SR, options=SHORT)  # a list of arrays is a batch
    assert len(outs) == 2


def test_chat_audio_is_checked_like_asr(tiny_model):
    session = tiny_model.chat(options=SHORT)
    with pytest.raises(InputError, match="NaN or infinite"):
        session.send(audio=np.full(800, np.nan, dtype=np.float32), sample_rate=SR)
    with pytest.raises(InputError, match="outside the supported"):
        session.send(audio=tone(0.2), sample_rate=0)
    with pytest.raises(InputError, match="raw bytes"):
        session.send(audio=b"RIFF")
    assert session.history == []  # nothing was sent


# ------------------------------------------------------------------------------------------------ audio too long
def test_asr_too_long_audio_says_how_many_seconds_fit(tiny_model):
    frame_rate = tiny_model.speech.frame_rate
    overhead = len(tiny_model._task_prompt("asr", speech=[]))
    context = tiny_model.context(tiny_model.options("asr"))
    fit_frames = context - 1 - overhead
    with pytest.raises(InputError) as e:
        tiny_model.asr(tone(30.0), sample_rate=SR, options=SHORT)
    msg = str(e.value)
    assert "the audio is 30.0 s long" in msg
    assert f"context fits about {fit_frames / frame_rate:.1f} s of audio" in msg and "ASR prompt" in msg
    assert "trim or split" in msg
    # Exactly at the limit it runs; one frame more is refused with the same message.
    hop = tiny_model.speech.hop_length
    assert isinstance(tiny_model.asr(tone(fit_frames * hop / SR), sample_rate=SR, options=SHORT).text, str)
    with pytest.raises(InputError, match="fits about"):
        tiny_model.asr(tone((fit_frames + 1) * hop / SR), sample_rate=SR, options=SHORT)


def test_chat_too_long_audio_says_how_many_seconds_fit(tiny_model):
    session = tiny_model.chat(options=SHORT)
    with pytest.raises(InputError, match=r"the audio is 30\.0 s long .* fits about [0-9.]+ s of audio .* chat turn"):
        session.send(audio=tone(30.0), sample_rate=SR)


# ------------------------------------------------------------------------------------------------ images
@pytest.mark.parametrize("image, match", [
    (None, "no image given"),
    (5, "got int"),
    (b"\x89PNG", "raw bytes"),
    (np.zeros((16, 16, 3), dtype=np.uint8), "numpy array"),
    (torch.zeros(16, 16), "float tensor"),
    (torch.zeros(1, 1, 3, 16, 16), "float tensor"),
    (torch.zeros(3, 16, 16, dtype=torch.long), "float tensor"),
    (torch.zeros(3, 0, 16), "non-empty"),
    (torch.full((3, 16, 16), float("nan")), "NaN or infinite"),
    (torch.zeros(2, 3, 16, 16), "expected one image, got 2"),
    (Image.new("RGB", (0, 0)), "no pixels"),
    ("", "empty string"),
])
def test_caption_refuses_malformed_images(tiny_model, image, match):
    with pytest.raises(InputError, match=match):
        tiny_model.caption(image, options=SHORT)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "CMYK", "I;16", "I", "F", "RGBA"])
def test_caption_takes_pil_images_of_any_mode(tiny_model, mode):
    img = Image.new(mode, (20, 12))
    assert isinstance(tiny_model.caption(img, options=SHORT).text, str)


def test_chat_images_must_be_images(tiny_model):
    session = tiny_model.chat(options=SHORT)
    with pytest.raises(InputError, match="images must be a list"):
        session.send(text="hi", images=5)
    with pytest.raises(InputError, match="numpy array"):
        session.send(text="hi", images=[np.zeros((3, 3))])


# ------------------------------------------------------------------------------------------------ prompts
@pytest.mark.parametrize("call", [
    lambda m: m.tts("a\ud800b", options=SHORT),
    lambda m: m.t2i("\udfff", options=SHORT),
    lambda m: m.caption(torch.zeros(3, 16, 16), instruction="x\ud800", options=SHORT),
    lambda m: m.chat(options=SHORT).send(text="hi \ud800"),
    lambda m: m.chat(options=SHORT).send(text="hi", append_text="\ud800"),
    lambda m: m.encode(Conversation([Turn("user", [TextSegment("\ud800")])])),
])
def test_lone_surrogates_are_refused_with_their_position(tiny_model, call):
    with pytest.raises(InputError, match=r"unpaired surrogate '\\ud[89a-f][0-9a-f]{2}' at position \d"):
        call(tiny_model)


def test_surrogate_position_is_reported():
    from aromni.tokenizers.text import check_text

    with pytest.raises(InputError, match="at position 3"):
        check_text("abc\ud800")
    assert check_text("tab\tnul\x00bell\x07") == "tab\tnul\x00bell\x07"  # control characters pass


def test_control_characters_pass_through(tiny_model):
    ids = tiny_model.encode(Conversation([Turn("user", [TextSegment("a\x00\x01\x1fb")])]))
    assert len(ids) > 4


def test_megabyte_prompt_is_refused_at_once(tiny_model):
    text = "hello world " * 90_000  # ~1 MB
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"1,080,000 characters long, far more than this model's 512-token context"):
        tiny_model.tts(text, options=SHORT)
    assert time.perf_counter() - t0 < 5.0  # refused before tokenizing (tokenizing alone takes ~1 s per MB)
    with pytest.raises(InputError, match="characters long"):
        tiny_model.chat(options=SHORT).send(text="a" * 1_000_000)


def test_char_bound_never_refuses_text_that_fits(tiny_model):
    bound = tiny_model.text.max_chars_per_token
    assert isinstance(bound, int) and bound >= 1
    vocab = tiny_model.text._tk.get_vocab(with_added_tokens=False)
    longest = max(vocab, key=len)
    text = tiny_model.text.decode([vocab[longest]])
    # A text made of the longest token: exactly as many tokens as repeats, each covering <= bound characters.
    n = 20
    ids = tiny_model.text.encode(text * n)
    assert len(text * n) <= len(ids) * bound


@pytest.mark.parametrize("text", [5, None, b"hi", ["a", 5], [], ("a", None)])
def test_non_string_text_is_refused(tiny_model, text):
    with pytest.raises(InputError):
        tiny_model.tts(text, options=SHORT)
    with pytest.raises(InputError):
        tiny_model.t2i(text, options=SHORT)


@pytest.mark.parametrize("prompts", [[[10**9]], [[-1]], [[1.5]], [["a"]], ["abc"], None, [[]], [[[1]]], [[True]]])
def test_generate_refuses_bad_token_ids(tiny_model, prompts):
    with pytest.raises(InputError):
        tiny_model.generate(prompts, SHORT)


@pytest.mark.parametrize("seg, match", [
    (ImageSegment([10**6]), "out of range"),
    (ImageSegment(["a"]), "1-D list of integers"),
    (ImageSegment([1.5]), "1-D list of integers"),
    (ImageSegment(None), "1-D list of integers"),
    (TextSegment(ids=[10**6]), "out of range"),
    (TextSegment(5), "must be a string"),
])
def test_encode_refuses_bad_segments(tiny_model, seg, match):
    with pytest.raises(InputError, match=match):
        tiny_model.encode(Conversation([Turn("user", [seg])]))


@pytest.mark.parametrize("conv", ["hi", None, [1, 2], {"turns": []}])
def test_encode_takes_a_conversation(tiny_model, conv):
    with pytest.raises(InputError, match="encode takes a Conversation"):
        tiny_model.encode(conv)


def test_conversation_and_turn_types_are_checked():
    with pytest.raises(InputError, match="turns must be a list"):
        Conversation("abc")
    with pytest.raises(InputError, match="not a Turn"):
        Conversation(["abc"])
    with pytest.raises(InputError, match="segments must be a list"):
        Turn("user", None)


def test_decode_segments_takes_a_list(tiny_model):
    with pytest.raises(InputError):
        tiny_model.decode_segments(None)
    with pytest.raises(InputError, match="1-D list of integers"):
        tiny_model.decode_segments([ImageSegment(["x"])])


# ------------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize("options, match", [
    ([1, 2], "must be a mapping"),
    ("greedy", "must be a mapping"),
    ({"image": {"cfg": "yes"}}, "cfg"),
    ({"text": {"greedy": 1}}, "greedy"),
    ({"text": {"temperature": float("inf")}}, "temperature"),
    ({"text": {"temperature": float("nan")}}, "temperature"),
    ({"text": {"top_p": float("nan")}}, "top_p"),
    ({"text": {"repetition_penalty": float("nan")}}, "repetition_penalty"),
    ({"image": {"guidance_scale_text": float("inf")}}, "guidance_scale_text"),
    ({"text": {"top_k": 1.5}}, "top_k"),
    ({"foo": 1}, "foo"),
    ({"text": {"foo": 1}}, "foo"),
    ({"text": [1]}, "text"),
    ({"max_new_tokens": 5.5}, "max_new_tokens"),
    ({"seed": "abc"}, "seed"),
    ({"seed": 2**70}, "seed"),
    ({"allow_image": "no"}, "allow_image"),
])
def test_bad_options_are_config_errors_naming_the_key(tiny_model, options, match):
    with pytest.raises(ConfigError, match=match):
        tiny_model.options("chat", options)
    with pytest.raises(ConfigError, match=match):
        tiny_model.tts("hi", options=options)


def test_options_types_are_checked_on_direct_construction():
    for bad in (dict(temperature=math.inf), dict(temperature=True), dict(greedy="yes"), dict(top_k=2.0)):
        with pytest.raises(ConfigError):
            TextSampling(**bad)
    for bad in (dict(cfg="yes"), dict(guidance_scale_image=math.nan), dict(greedy=1)):
        with pytest.raises(ConfigError):
            ImageSampling(**bad)
    for bad in (dict(text=[1]), dict(image="x"), dict(extra_eos="eom"), dict(extra_eos=[1.5]), dict(seed="1"),
                dict(allow_text=1), dict(max_seq_len=10.0), dict(text={"foo": 1})):
        with pytest.raises(ConfigError):
            DecodeOptions(**bad)
    with pytest.raises(ConfigError, match="unknown generation options"):
        DecodeOptions().replace(temprature=1.0)
    with pytest.raises(ConfigError, match="unknown task"):
        task_options(["tts"])
    assert DecodeOptions(seed=[1, 2]).seed == (1, 2)  # valid forms are unchanged
    assert TextSampling(temperature=1).temperature == 1.0


def test_shortcut_arguments_are_type_checked(tiny_model):
    with pytest.raises(ConfigError, match="cfg"):
        tiny_model.t2i("a red circle", cfg="yes", options=SHORT)
    with pytest.raises(ConfigError, match="guidance_scale_text"):
        tiny_model.t2i("a red circle", guidance_scale_text="x", options=SHORT)
    with pytest.raises(ConfigError, match="seed"):
        tiny_model.tts("hi", seed="x", options={"max_new_tokens": 3})
    with pytest.raises(ConfigError, match="seed"):
        tiny_model.chat(options=SHORT).send(text="hi", seed="x")
    with pytest.raises(ConfigError, match="chunk_frames"):
        tiny_model.tts("hi", stream=True, chunk_frames="x", options=SHORT)
    with pytest.raises(InputError, match="unknown chat turn fields"):
        tiny_model.chat(options=SHORT).send(text="hi", foo=1)
    with pytest.raises(ConfigError, match="unknown chat settings"):
        tiny_model.chat(options=SHORT, foo=1)
    with pytest.raises(ConfigError, match="reserve_tokens"):
        tiny_model.chat(options=SHORT, reserve_tokens="x")


def test_generate_takes_options_or_a_mapping(tiny_model):
    steps = list(tiny_model.generate([[tiny_model.layout.bos]], {"max_new_tokens": 2, "seed": 0}))
    assert len(steps) == 2
    with pytest.raises(ConfigError, match="DecodeOptions or a mapping"):
        tiny_model.generate([[1]], "fast")
    with pytest.raises(ConfigError, match="unknown fields"):
        tiny_model.generate([[1]], {"a": 1})


def test_tts_options_say_what_greedy_means(tiny_model):
    """``options("tts")`` shows a text temperature; it is honest: speech codes are always greedy, and sampling
    (with that temperature) starts only after ``<eoa>``, as the docstrings say."""
    from aromni.inference.fsm import ModalityFSM
    from aromni.inference.omni import OmniModel
    from aromni.inference.options import TASK_OVERRIDES

    L = tiny_model.layout
    opts = tiny_model.options("tts")
    assert opts.text.greedy is True and not opts.allow_image
    fsm = ModalityFSM(L, opts, tiny_model.engine.image_tokens, "cpu")
    rows = fsm.initial([tiny_model._task_prompt("tts", text="hi")])
    greedy = []
    for tok in (L.boa, L.speech.to_ids([3]), L.eoa):
        rows = fsm.advance(rows, torch.tensor([int(np.asarray(tok).reshape(-1)[0])]), torch.tensor([True]))
        greedy.append(bool(fsm.greedy_rows(rows)[0]))
    assert greedy == [True, True, False]  # greedy in the span, sampling after <eoa>
    doc = " ".join(OmniModel.options.__doc__.split())
    assert "<eoa>" in doc and "never to the speech codes" in doc
    assert "tts" in TASK_OVERRIDES


# ------------------------------------------------------------------------------------------------ load
@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.bool, "int8", "foo", 5, object()])
def test_load_refuses_non_float_dtypes(tiny_bundle, dtype):
    with pytest.raises(ConfigError, match="float32"):
        aromni.load(str(tiny_bundle), dtype=dtype)


def test_load_accepts_float_dtypes_by_name_and_object(tiny_bundle):
    m = aromni.load(str(tiny_bundle), dtype="torch.bfloat16")
    assert m.bundle.decoder.embed.weight.dtype == torch.bfloat16
    m = aromni.load(str(tiny_bundle), dtype=torch.float16, device=None)
    assert m.bundle.decoder.embed.weight.dtype == torch.float16 and m.device.type == "cpu"


@pytest.mark.parametrize("device", ["foo", "cuda:99", 5, 1.5, ["cpu"]]
                         + (["cuda"] if not torch.cuda.is_available() else [])
                         + (["mps"] if not torch.backends.mps.is_available() else []))
def test_load_refuses_unavailable_devices(tiny_bundle, device):
    with pytest.raises(InputError, match="device"):
        aromni.load(str(tiny_bundle), device=device)


@pytest.mark.parametrize("path, error", [("nonexistent", CheckpointError), (None, InputError), (5, InputError),
                                         ("", InputError), (b"x", InputError)])
def test_load_refuses_bad_paths(path, error):
    with pytest.raises(error):
        aromni.load(path)


def test_load_refuses_unknown_options_and_files(tiny_bundle):
    with pytest.raises(ConfigError, match="unknown options"):
        aromni.load(str(tiny_bundle), devise="cpu")
    with pytest.raises(CheckpointError, match="it is a file"):
        aromni.load(str(tiny_bundle / "config.json"))


# ------------------------------------------------------------------------------------------------ saving
def test_speech_and_image_outputs_refuse_to_overwrite_alike(tmp_path, tiny_model):
    from aromni.inference.omni import ImageOutput, SpeechOutput

    speech = SpeechOutput(torch.zeros(1600), SR, [], [], None)
    image = ImageOutput(Image.new("RGB", (8, 8), (200, 0, 0)), [], [], None)
    for out, name in ((speech, "a.wav"), (image, "a.png")):
        path = tmp_path / name
        path.write_bytes(b"precious")
        with pytest.raises(InputError, match="already exists"):
            out.save(path)
        assert path.read_bytes() == b"precious"
        out.save(path, overwrite=True)
        assert path.read_bytes() != b"precious"
        with pytest.raises(InputError, match="directory"):
            out.save(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.wav"]  # atomic: no temporary files left


def test_only_aromni_errors_leave_the_api(tiny_model):
    """A sweep of wrong argument types: each is refused with an AromniError, never a raw exception."""
    calls = [
        lambda: tiny_model.asr([], sample_rate=SR),
        lambda: tiny_model.asr(object(), sample_rate=SR),
        lambda: tiny_model.caption([], options=SHORT),
        lambda: tiny_model.options(None),
        lambda: tiny_model.options("tts", {1: 2}),
        lambda: tiny_model.chat(options=[1]),
        lambda: tiny_model.chat(options=SHORT).send(),
        lambda: list(tiny_model.chat(options=SHORT).stream(text=5)),
        lambda: tiny_model.tts("hi", instruction=5, options=SHORT),
        lambda: tiny_model.tts("hi", stream=True, decoder_options=[1], options=SHORT),
        lambda: media.codes_to_audio(tiny_model.speech, [["x"]]),
        lambda: media.codes_to_image(tiny_model.image, "abc"),
    ]
    for call in calls:
        with pytest.raises(AromniError):
            call()
