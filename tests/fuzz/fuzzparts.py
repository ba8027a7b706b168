"""Builders of malformed inputs for the fuzz suite: audio and image files (valid-but-odd and broken), pickles
with a payload, corrupt safetensors, and the tiny training setup. Pure helpers; no pytest here."""

from __future__ import annotations

import io
import json
import pickle
import random
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

#: Generated tokens at most in every task call: the inputs are what is fuzzed, not generation.
MAX_NEW = 8
SR = 16000


def rand_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


# ------------------------------------------------------------------------------------------------ audio
def wav_bytes(data: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, data, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def tone(seconds: float, rate: int = SR, channels: int = 1, freq: float = 220.0) -> np.ndarray:
    n = max(1, int(round(seconds * rate)))
    t = np.arange(n) / rate
    x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x * (1 - 0.1 * c) for c in range(channels)], axis=1)


def raw_wav(payload: bytes, *, rate: int = SR, channels: int = 1, bits: int = 16, fmt_tag: int = 1,
            data_size: int | None = None, riff_size: int | None = None) -> bytes:
    """A hand-built RIFF/WAVE file; sizes in the header may lie."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    size = len(payload) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + payload
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def float_wav(values: np.ndarray, rate: int = SR) -> bytes:
    """A 32-bit float WAV written by hand (so NaN/inf samples survive)."""
    return raw_wav(np.asarray(values, dtype="<f4").tobytes(), rate=rate, bits=32, fmt_tag=3)


def audio_files() -> list[tuple[str, str, Any, str]]:
    """``(id, file name, bytes, expect)`` of audio inputs."""
    pcm = (tone(0.5) * 32767).astype("<i2").tobytes()
    full = raw_wav(pcm)
    nan = tone(0.5)
    nan[100:200] = np.nan
    inf = tone(0.5)
    inf[50] = np.inf
    ninf = tone(0.5)
    ninf[::7] = -np.inf
    loud = tone(0.5) * 1000.0
    return [
        ("zero_byte_wav", "a.wav", b"", "error"),
        ("zero_byte_flac", "a.flac", b"", "error"),
        ("header_only", "a.wav", full[:44][:40] + struct.pack("<I", 16000), "error"),
        ("truncated_half", "a.wav", full[: len(full) // 2], "error"),
        ("truncated_in_header", "a.wav", full[:20], "error"),
        ("truncated_1_byte", "a.wav", full[:-1], "error"),
        ("data_size_zero", "a.wav", raw_wav(b"", data_size=0), "error"),
        ("odd_data_size", "a.wav", raw_wav(pcm + b"\x01"), "any"),
        ("riff_size_lies", "a.wav", raw_wav(pcm, riff_size=0xFFFFFFF0), "any"),
        ("header_claims_hours", "a.wav", raw_wav(pcm[:3200], rate=8000, data_size=0xFFFFFF00), "error"),
        ("random_wav", "a.wav", rand_bytes(4096, 1), "error"),
        ("random_flac", "a.flac", rand_bytes(4096, 2), "error"),
        ("random_ogg", "a.ogg", rand_bytes(2048, 3), "error"),
        ("riff_then_garbage", "a.wav", b"RIFF\x10\x00\x00\x00WAVEfmt " + rand_bytes(64, 4), "error"),
        ("png_named_wav", "a.wav", png_bytes("RGB", (4, 4)), "error"),
        ("text_named_wav", "a.wav", b"hello, this is not audio\n" * 20, "error"),
        ("unknown_fmt_tag", "a.wav", raw_wav(pcm, fmt_tag=0x55), "error"),
        ("zero_channels", "a.wav", raw_wav(pcm, channels=0), "error"),
        ("zero_rate", "a.wav", raw_wav(pcm, rate=0), "error"),
        ("nan_samples", "a.wav", float_wav(nan), "error"),
        ("inf_sample", "a.wav", float_wav(inf), "error"),
        ("neg_inf_samples", "a.wav", float_wav(ninf), "error"),
        ("loud_float", "a.wav", float_wav(loud), "any"),
        ("one_sample", "a.wav", wav_bytes(np.array([0.1], dtype=np.float32), SR), "any"),
        ("longer_than_context", "a.wav", wav_bytes(tone(20.0, 8000), 8000), "error"),
        ("rate_1hz", "a.wav", wav_bytes(tone(3.0, 1), 1), "any"),
        ("rate_7hz", "a.wav", wav_bytes(tone(2.0, 7), 7), "any"),
        ("rate_8000", "a.wav", wav_bytes(tone(0.5, 8000), 8000), "ok"),
        ("rate_44100", "a.wav", wav_bytes(tone(0.5, 44100), 44100), "ok"),
        ("rate_192000", "a.wav", wav_bytes(tone(0.3, 192000), 192000), "ok"),
        ("stereo_44100", "a.wav", wav_bytes(tone(0.5, 44100, channels=2), 44100), "ok"),
        ("six_channels", "a.wav", wav_bytes(tone(0.3, 48000, channels=6), 48000), "ok"),
        ("pcm_u8", "a.wav", wav_bytes(tone(0.5), SR, "PCM_U8"), "ok"),
        ("pcm_24", "a.wav", wav_bytes(tone(0.5), SR, "PCM_24"), "ok"),
        ("pcm_s8_aiff", "a.aiff", wav_bytes(tone(0.5), SR, "PCM_S8", "AIFF"), "ok"),
        ("pcm_32", "a.wav", wav_bytes(tone(0.5), SR, "PCM_32"), "ok"),
        ("double", "a.wav", wav_bytes(tone(0.5), SR, "DOUBLE"), "ok"),
        ("flac_24", "a.flac", wav_bytes(tone(0.5), SR, "PCM_24", "FLAC"), "ok"),
        ("ogg_vorbis", "a.ogg", wav_bytes(tone(0.5, 22050), 22050, "VORBIS", "OGG"), "ok"),
        ("silence", "a.wav", wav_bytes(np.zeros(SR // 2, dtype=np.float32), SR), "ok"),
        ("wav_named_flac", "a.flac", wav_bytes(tone(0.5), SR), "any"),
    ]


# ------------------------------------------------------------------------------------------------ images
def png_bytes(mode: str, size: tuple[int, int], fmt: str = "PNG", color: Any = None, **save: Any) -> bytes:
    from PIL import Image

    img = Image.new(mode, size, color if color is not None else 0)
    if mode in ("RGB", "RGBA"):
        px = np.random.default_rng(0).integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
        img = Image.fromarray(px)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_header(width: int, height: int, *, bit_depth: int = 8, color_type: int = 2,
                    idat: bytes | None = None) -> bytes:
    """A PNG whose IHDR claims ``width x height`` (valid CRCs) with a tiny (wrong) pixel stream."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = zlib.compress(b"\x00" * 64) if idat is None else idat
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def image_files() -> list[tuple[str, str, Any, str]]:
    """``(id, file name, bytes, expect)`` of image inputs."""
    from PIL import Image

    def pil(img: Any, fmt: str = "PNG", **kw: Any) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        return buf.getvalue()

    good_png = png_bytes("RGB", (32, 24))
    good_jpg = png_bytes("RGB", (32, 24), "JPEG")
    pal = Image.new("P", (20, 20))
    pal.putpalette([i % 256 for i in range(768)])
    pal.info["transparency"] = 0
    i16 = Image.fromarray((np.arange(400, dtype=np.uint16) * 150).reshape(20, 20))
    fimg = Image.fromarray(np.linspace(-5, 5, 400, dtype=np.float32).reshape(20, 20))
    exif = Image.new("RGB", (30, 10), (200, 10, 10))
    ex = exif.getexif()
    ex[0x0112] = 6  # rotated 90 degrees
    anim = [Image.new("P", (12, 12), i * 40) for i in range(3)]
    gif = io.BytesIO()
    anim[0].save(gif, format="GIF", save_all=True, append_images=anim[1:])
    bad_crc = bytearray(good_png)
    bad_crc[29] ^= 0xFF  # inside the IHDR CRC
    return [
        ("one_by_one_rgb", "a.png", png_bytes("RGB", (1, 1)), "ok"),
        ("one_by_one_l", "a.png", png_bytes("L", (1, 1)), "ok"),
        ("one_by_one_jpeg", "a.jpg", png_bytes("RGB", (1, 1), "JPEG"), "ok"),
        ("header_100000_square", "a.png", png_with_header(100000, 100000), "error"),
        ("header_9000_square", "a.png", png_with_header(9000, 9000), "error"),
        ("header_1_by_2e9", "a.png", png_with_header(1, 2**31 - 1), "error"),
        ("header_zero_width", "a.png", png_with_header(0, 10), "error"),
        ("header_bad_bitdepth", "a.png", png_with_header(8, 8, bit_depth=7), "error"),
        ("cmyk_jpeg", "a.jpg", pil(Image.new("CMYK", (16, 16), (0, 128, 255, 10)), "JPEG"), "ok"),
        ("png_16bit_i16", "a.png", pil(i16), "ok"),
        ("palette_transparency", "a.png", pil(pal, transparency=0), "ok"),
        ("la", "a.png", png_bytes("LA", (10, 10)), "ok"),
        ("rgba", "a.png", png_bytes("RGBA", (10, 10)), "ok"),
        ("mode_1", "a.png", png_bytes("1", (10, 10)), "ok"),
        ("mode_f_tiff", "a.tiff", pil(fimg, "TIFF"), "any"),
        ("exif_rotated_jpeg", "a.jpg", pil(exif, "JPEG", exif=ex), "ok"),
        ("animated_gif", "a.gif", gif.getvalue(), "ok"),
        ("bmp", "a.bmp", png_bytes("RGB", (9, 7), "BMP"), "ok"),
        ("webp", "a.webp", png_bytes("RGB", (9, 7), "WEBP"), "ok"),
        ("wide_4000x1", "a.png", png_bytes("RGB", (4000, 1)), "any"),
        ("tall_1x4000", "a.png", png_bytes("L", (1, 4000)), "any"),
        ("truncated_png", "a.png", good_png[: len(good_png) // 2], "error"),
        ("truncated_png_header", "a.png", good_png[:30], "error"),
        ("truncated_jpeg", "a.jpg", good_jpg[: len(good_jpg) // 2], "error"),
        ("jpeg_soi_only", "a.jpg", b"\xff\xd8\xff", "error"),
        ("png_bad_crc", "a.png", bytes(bad_crc), "error"),
        ("random_png", "a.png", rand_bytes(3000, 5), "error"),
        ("random_jpg", "a.jpg", rand_bytes(3000, 6), "error"),
        ("zero_byte", "a.png", b"", "error"),
        ("text_named_png", "a.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "error"),
        ("wav_named_png", "a.png", wav_bytes(tone(0.1), SR), "error"),
    ]


# ------------------------------------------------------------------------------------------------ pickles
class Payload:
    """Unpickling this object creates ``path`` (opened for writing): the proof that a pickle was executed."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def torch_payload(marker: Path, *, wrap: str = "state") -> bytes:
    """``torch.save`` of a dict that holds a payload (zipfile format), the way a hostile checkpoint looks."""
    import torch

    obj: Any = {"tok_embeddings.weight": torch.zeros(2, 2), "evil": Payload(marker)}
    if wrap == "model":
        obj = {"model": obj}
    elif wrap == "bare":
        obj = Payload(marker)
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def legacy_payload(marker: Path, protocol: int = 2) -> bytes:
    """A plain (pre-zipfile) pickle stream holding a payload."""
    return pickle.dumps({"weight": [1.0], "evil": Payload(marker)}, protocol=protocol)


# ------------------------------------------------------------------------------------------------ safetensors
def safetensors_header(header: bytes | str, *, length: int | None = None, tail: bytes = b"") -> bytes:
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h) if length is None else length) + h + tail


def retype_safetensors(path: Path, dtype: Any) -> None:
    """Rewrite every tensor of a safetensors file in ``dtype``."""
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    out = {}
    for k, v in state.items():
        if dtype is torch.bool:
            out[k] = v > 0
        elif dtype.is_complex:
            out[k] = v.to(torch.float32).to(dtype)
        else:
            out[k] = v.to(dtype).contiguous()
    save_file(out, str(path))


def edit_safetensors(path: Path, fn) -> None:
    """``state = fn(state)`` on a safetensors file."""
    from safetensors.torch import load_file, save_file

    state = fn(dict(load_file(str(path))))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def edit_json(path: Path, fn) -> None:
    raw = json.loads(path.read_text())
    out = fn(raw)
    path.write_text(json.dumps(raw if out is None else out))


# ------------------------------------------------------------------------------------------------ training
def tiny_train_overrides(data_root: Path, out: Path | str, **extra: Any) -> list[str]:
    """``key=value`` settings of a sub-second run of a tiny model on the small synthetic corpus."""
    base: dict[str, Any] = {
        "out": str(out), "num_threads": 1, "data.root": str(data_root), "data.seq_len": 64,
        "data.micro_batch": 2,
        "model.decoder": "{preset: tiny, dim: 32, n_layers: 1, n_heads: 2, n_kv_heads: 2, ffn_dim: 64, "
                         "max_seq_len: 64}",
        "perceptual.table": str(data_root / "image_codebook.safetensors"), "optim.lr": 3e-3,
        "optim.max_steps": 2, "optim.grad_accum": 1, "checkpoint.every": 1, "checkpoint.keep_last": 2,
        "log.progress": False, "export.enabled": False,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def tiny_train_yaml(data_root: Path, out: Path | str, **extra: Any) -> dict[str, Any]:
    """The same settings as a nested mapping (for config files)."""
    import yaml

    raw: dict[str, Any] = {}
    for item in tiny_train_overrides(data_root, out):
        key, _, value = item.partition("=")
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    for key, value in extra.items():
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return raw


def run_api(fn):
    """Call ``fn`` restoring torch's thread count (a recipe sets it)."""
    import torch

    threads = torch.get_num_threads()
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def task_args(bundle: Path, max_new: int = MAX_NEW) -> list[str]:
    return ["--model", str(bundle), "--max-new-tokens", str(max_new), "--seed", "0"]
