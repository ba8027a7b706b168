"""Audio and image files and arrays on the way in (issue #9): odd-but-valid input converts correctly, broken input
is one InputError naming the file and the problem."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from PIL import Image

from aromni.errors import InputError
from aromni.tokenizers.image.image_io import load_image, save_image
from aromni.tokenizers.image.preprocess import preprocess, whiten_transparency
from aromni.tokenizers.speech.audio_io import check_sample_rate, load_audio, save_wav, waveform_from_array

SR = 16000


def tone(seconds: float, rate: int = SR, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ audio files
def _wav(tmp_path, name: str, data: np.ndarray, rate: int, subtype: str = "PCM_16"):
    p = tmp_path / name
    sf.write(p, data, rate, subtype=subtype)
    return p


def test_broken_audio_files_are_clean_errors(tmp_path):
    good = _wav(tmp_path, "good.wav", tone(0.5), SR).read_bytes()
    cases = {
        "zero.wav": (b"", "not a readable audio file"),
        "half.wav": (good[: len(good) // 2], "truncated"),
        "header.wav": (good[:30], "not a readable audio file"),
        "random.wav": (np.random.default_rng(0).bytes(4096), "not a readable audio file"),
    }
    for name, (data, match) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=match):
            load_audio(tmp_path / name, SR)
    with pytest.raises(InputError, match="no such audio file"):
        load_audio(tmp_path / ("x" * 300 + ".wav"), SR)  # a name the OS refuses is "no such file", not OSError


def test_one_sample_and_odd_rates_and_stereo(tmp_path):
    assert load_audio(_wav(tmp_path, "one.wav", np.array([0.25], np.float32), SR, "FLOAT"), SR).shape == (1,)
    x = tone(0.5, 11025)
    wav = load_audio(_wav(tmp_path, "odd.wav", x, 11025, "FLOAT"), SR)
    assert np.allclose(wav.numpy(), soxr.resample(x, 11025, SR, quality="HQ"), atol=1e-6)
    left, right = tone(0.5, 44100, 440.0), tone(0.5, 44100, 1000.0)
    st = load_audio(_wav(tmp_path, "st.wav", np.stack([left, right], 1), 44100, "FLOAT"), SR)
    assert np.allclose(st.numpy(), soxr.resample((left + right) / 2, 44100, SR, quality="HQ"), atol=1e-6)


def test_absurd_sample_rates_in_files_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"sample rate 7 Hz is outside the supported 1000-768000 Hz"):
        load_audio(_wav(tmp_path, "r7.wav", tone(2.0, 7), 7), SR)
    with pytest.raises(InputError, match="outside the supported"):
        load_audio(_wav(tmp_path, "r1.wav", tone(100.0, 1), 1), SR)  # 100 s at 1 Hz: 1.6 M samples at 16 kHz


def test_very_long_file_is_refused_from_its_header(tmp_path):
    p = _wav(tmp_path, "long.wav", np.zeros(SR * 11, np.float32), SR)
    with pytest.raises(InputError, match=r"11\.0 s long, over the 10 s limit"):
        load_audio(p, SR, max_seconds=10)


# ------------------------------------------------------------------------------------------------ audio arrays
def test_waveform_rules():
    x = tone(0.25)
    assert torch.equal(waveform_from_array(x, SR, SR), torch.from_numpy(x))
    stereo = np.stack([x, -0.5 * x])
    assert torch.allclose(waveform_from_array(stereo, SR, SR), torch.from_numpy(0.25 * x))
    assert torch.allclose(waveform_from_array(torch.from_numpy(stereo).bfloat16(), SR, SR),
                          torch.from_numpy(0.25 * x), atol=1e-2)
    pcm = (x * 32768).astype(np.int16)
    assert torch.allclose(waveform_from_array(pcm, SR, SR), torch.from_numpy(pcm / 32768.0).float())
    u8 = np.array([0, 128, 255], np.uint8)
    assert waveform_from_array(u8, SR, SR).tolist() == pytest.approx([-1.0, 0.0, 127 / 128])
    assert waveform_from_array(x, 8000, SR).shape == (2 * len(x),)  # resampled


@pytest.mark.parametrize("audio, match", [
    (np.zeros((SR, 2), np.float32), r"looks like \[samples, channels\]"),
    (np.zeros((40, 50), np.float32), r"\[channels, samples\] with at most 16 channels"),
    (np.array([1e300, 0.0]), "NaN or infinite"),  # overflows float32
    (np.array([[0.1, 0.2], [0.3]], dtype=object), "does not hold numbers"),
    ([[0.1, 0.2], [0.3]], "not a rectangular array"),
    (np.zeros(3, np.uint16), "no PCM scale"),
])
def test_waveform_refusals(audio, match):
    with pytest.raises(InputError, match=match):
        waveform_from_array(audio, SR, SR)


def test_array_length_limit_is_checked_before_resampling():
    with pytest.raises(InputError, match=r"over the 600 s limit"):
        waveform_from_array(np.zeros(1000 * 601, np.float32), 1000, SR)


@pytest.mark.parametrize("rate, ok", [(16000, True), (16000.0, True), (np.int64(8000), True), (1000, True),
                                      (768000, True), (999, False), (0, False), (-1, False), (8000.5, False),
                                      ("16000", False), (True, False), (float("nan"), False), (None, False)])
def test_check_sample_rate(rate, ok):
    if ok:
        assert check_sample_rate(rate) == int(rate)
    else:
        with pytest.raises(InputError):
            check_sample_rate(rate)


def test_save_wav_errors_are_clean(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        save_wav(tmp_path, np.zeros(10), SR)
    with pytest.raises(InputError, match="sample rate must be a positive integer"):
        save_wav(tmp_path / "a.wav", np.zeros(10), 0)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write"):
        save_wav(blocker / "a.wav", np.zeros(10), SR)  # parent is a file


# ------------------------------------------------------------------------------------------------ image files
def _png_with_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def test_too_large_image_is_named_as_too_large_not_corrupt(tmp_path):
    p = tmp_path / "big.png"
    Image.new("1", (10000, 10000)).save(p)  # a real 10000x10000 file (100 M pixels, over Pillow's warning)
    with pytest.raises(InputError, match=r"big\.png: image is 10000x10000 pixels \(100,000,000\), larger than the "
                                         r"67,108,864-pixel limit \(downscale it"):
        load_image(p)


@pytest.mark.parametrize("w, h", [(100_000, 100_000), (2**31 - 1, 2**31 - 1), (20_000, 10_000)])
def test_huge_header_dims_say_the_size(tmp_path, w, h):
    p = tmp_path / "hdr.png"
    p.write_bytes(_png_with_header(w, h))  # past Pillow's own decompression-bomb error too
    with pytest.raises(InputError, match=rf"image is {w}x{h} pixels .*-pixel limit"):
        load_image(p)


def test_truncated_image_is_truncated(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    p = tmp_path / "cut.png"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(p)
    p.write_bytes(_png_with_header(60_000, 1))  # header fine, pixel data missing
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(p)


def test_odd_modes_convert_to_the_right_rgb(tmp_path):
    def rgb_of(img, name):
        p = tmp_path / name
        img.save(p)
        return tuple(np.asarray(whiten_transparency(load_image(p)))[0, 0])

    assert rgb_of(Image.new("RGB", (1, 1), (255, 0, 0)), "one.png") == (255, 0, 0)
    assert rgb_of(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "cmyk.jpg") == (255, 0, 0)
    assert rgb_of(Image.fromarray(np.full((4, 4), 65535, np.uint16)), "white16.png") == (255, 255, 255)
    # 16-bit mid-grey is mid-grey (Pillow alone clips it to 255)
    assert rgb_of(Image.fromarray(np.full((4, 4), 32896, np.uint16)), "grey16.png") == (128, 128, 128)
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    pal.info["transparency"] = 0
    assert rgb_of(pal, "pal.png") == (255, 255, 255)  # the transparent index becomes white
    assert rgb_of(Image.new("LA", (4, 4), (40, 255)), "la.png") == (40, 40, 40)
    assert rgb_of(Image.new("LA", (4, 4), (40, 0)), "la0.png") == (255, 255, 255)
    assert preprocess([load_image(tmp_path / "one.png")], 16).shape == (1, 3, 16, 16)


def test_32bit_integer_images_are_scaled_when_they_hold_16_bit_values():
    img = Image.fromarray(np.full((4, 4), 65535, np.int32), "I")
    assert np.asarray(whiten_transparency(img))[0, 0].tolist() == [255, 255, 255]
    small = Image.fromarray(np.full((4, 4), 90, np.int32), "I")
    assert np.asarray(whiten_transparency(small))[0, 0].tolist() == [90, 90, 90]


def test_save_image_refusals(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        save_image(Image.new("RGB", (2, 2)), tmp_path, overwrite=True)
    with pytest.raises(InputError, match="PIL image or an image tensor"):
        save_image(5, tmp_path / "x.png")
    with pytest.raises(InputError, match="one image"):
        save_image(torch.zeros(2, 3, 4, 4), tmp_path / "x.png")


# ------------------------------------------------------------------------------------------------ text
def test_text_tokenizer_refuses_surrogates_and_non_strings(tmp_path):
    from aromni.tokenizers.text import TextTokenizer

    tk = TextTokenizer.train(["hello world"] * 10, 300, ["<s>", "</s>"], min_frequency=1)
    with pytest.raises(InputError, match=r"unpaired surrogate '\\ud800' at position 5"):
        tk.encode("hello\ud800")
    with pytest.raises(InputError, match="text 1 contains an unpaired surrogate"):
        tk.encode_batch(["ok", "\udc80"])
    for bad in (None, 5, b"hi"):
        with pytest.raises(InputError, match="must be a string"):
            tk.encode(bad)
    with pytest.raises(InputError):
        tk.decode([-1])
    with pytest.raises(InputError):
        tk.decode(["a"])
    assert tk.encode("a\x00b\x07") and tk.max_chars_per_token >= 5
