"""Fuzz: image inputs (files, PIL images, tensors, junk) through ``aromni caption --image``, the chat's
``/image`` turn, the dialog runner's ``image_paths`` and the API (caption, chat)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fuzzparts import MAX_NEW, image_files, task_args

FAMILY = "images"

FILES = image_files()
FILE_IDS = [f[0] for f in FILES]
OPTS = {"max_new_tokens": MAX_NEW, "seed": 0}
R = 16  # the tiny VQGAN's resolution


def _text(out) -> None:
    for o in out if isinstance(out, list) else [out]:
        assert isinstance(o.text, str), type(o.text)


def _special_path(case, kind: str):
    if kind == "missing":
        return case.inputs / "nope.png"
    if kind == "directory":
        d = case.inputs / "dir.png"
        d.mkdir()
        (d / "inner.png").write_bytes(b"")
        return d
    if kind == "dev_zero":
        return "/dev/zero"
    if kind == "symlink_loop":
        p = case.inputs / "loop.png"
        p.symlink_to(p)
        return p
    if kind == "empty_string":
        return ""
    if kind == "nul_in_path":
        return str(case.inputs / "a\x00b.png")
    if kind == "very_long_name":
        return str(case.inputs / ("y" * 300 + ".png"))
    raise AssertionError(kind)


SPECIAL = ["missing", "directory", "dev_zero", "symlink_loop", "empty_string", "nul_in_path", "very_long_name"]


# ------------------------------------------------------------------------------------------------ files
@pytest.mark.parametrize("name, fname, data, expect", FILES, ids=FILE_IDS)
def test_cli_caption_file(case, fuzz_bundle, name, fname, data, expect):
    path = case.write(fname, data)
    case.cli(["caption", "--image", str(path), *task_args(fuzz_bundle)], expect=expect)


@pytest.mark.parametrize("name, fname, data, expect", FILES, ids=FILE_IDS)
def test_api_caption_file(case, fuzz_model, name, fname, data, expect):
    path = case.write(fname, data)
    case.api(lambda: fuzz_model.caption(str(path), options=OPTS), expect=expect, check=_text)


@pytest.mark.parametrize("kind", SPECIAL)
def test_cli_caption_special_path(case, fuzz_bundle, kind):
    path = _special_path(case, kind)
    case.cli(["caption", "--image", str(path), *task_args(fuzz_bundle)], expect="error")


@pytest.mark.parametrize("kind", SPECIAL)
def test_api_caption_special_path(case, fuzz_model, kind):
    path = _special_path(case, kind)
    case.api(lambda: fuzz_model.caption(path, options=OPTS), expect="error", check=_text)


REPL_FILES = ["one_by_one_rgb", "header_100000_square", "cmyk_jpeg", "png_16bit_i16", "palette_transparency",
              "truncated_png", "truncated_jpeg", "random_png", "zero_byte", "png_bad_crc"]


@pytest.mark.parametrize("name", REPL_FILES)
def test_cli_chat_repl_image_turn(case, fuzz_bundle, name):
    _, fname, data, expect = FILES[FILE_IDS.index(name)]
    path = case.write(fname, data)
    case.cli(["chat", *task_args(fuzz_bundle), "--output-dir", str(case.out / "chat")],
             stdin=f"/image {path}\nwhat is this?\n/quit\n", expect=expect, repl=True)


def test_cli_chat_repl_image_directory(case, fuzz_bundle):
    path = _special_path(case, "directory")
    case.cli(["chat", *task_args(fuzz_bundle), "--output-dir", str(case.out / "chat")],
             stdin=f"/image {path}\nwhat is this?\n/quit\n", expect="error", repl=True)


DIALOG_FILES = ["one_by_one_rgb", "header_100000_square", "cmyk_jpeg", "truncated_png", "random_jpg", "zero_byte",
                "la", "rgba"]


@pytest.mark.parametrize("name", DIALOG_FILES)
def test_cli_chat_dialog_image_paths(case, fuzz_bundle, name):
    import json

    _, fname, data, expect = FILES[FILE_IDS.index(name)]
    case.write(fname, data)
    dialog = case.write("d.json", json.dumps({"dialog_id": "d", "turns": [{"text": "hi", "image_paths": [fname]}]}))
    case.cli(["chat", "--input", str(dialog), "--output-dir", str(case.out / "chat"), *task_args(fuzz_bundle)],
             expect=expect)


# ------------------------------------------------------------------------------------------------ objects
def _pil(mode: str, size, color=0):
    from PIL import Image

    return Image.new(mode, size, color)


OBJECTS = [
    ("pil_1x1", lambda: _pil("RGB", (1, 1)), "ok"),
    ("pil_0x0", lambda: _pil("RGB", (0, 0)), "error"),
    ("pil_0x5", lambda: _pil("L", (0, 5)), "error"),
    ("pil_cmyk", lambda: _pil("CMYK", (8, 8), (1, 2, 3, 4)), "ok"),
    ("pil_i16", lambda: _pil("I;16", (8, 8), 1000), "ok"),
    ("pil_i32", lambda: _pil("I", (8, 8), 70000), "any"),
    ("pil_float", lambda: _pil("F", (8, 8), 3.5), "any"),
    ("pil_palette", lambda: _pil("P", (8, 8), 3), "ok"),
    ("pil_la", lambda: _pil("LA", (8, 8), (10, 0)), "ok"),
    ("pil_rgba_transparent", lambda: _pil("RGBA", (8, 8), (0, 0, 0, 0)), "ok"),
    ("pil_ycbcr", lambda: _pil("YCbCr", (8, 8), (1, 2, 3)), "ok"),
    ("pil_hsv", lambda: _pil("HSV", (8, 8), (1, 2, 3)), "any"),
    ("pil_list_of_two", lambda: [_pil("RGB", (4, 4)), _pil("L", (5, 5))], "ok"),
    ("tensor_ok", lambda: torch.zeros(3, R, R), "ok"),
    ("tensor_batch1_ok", lambda: torch.zeros(1, 3, R, R), "ok"),
    ("tensor_float64", lambda: torch.zeros(3, R, R, dtype=torch.float64), "ok"),
    ("tensor_batch2", lambda: torch.zeros(2, 3, R, R), "error"),
    ("tensor_batch0", lambda: torch.zeros(0, 3, R, R), "error"),
    ("tensor_wrong_size", lambda: torch.zeros(3, 64, 64), "error"),
    ("tensor_one_channel", lambda: torch.zeros(1, R, R), "error"),
    ("tensor_hwc", lambda: torch.zeros(R, R, 3), "error"),
    ("tensor_2d", lambda: torch.zeros(R, R), "error"),
    ("tensor_5d", lambda: torch.zeros(1, 1, 3, R, R), "error"),
    ("tensor_uint8", lambda: torch.zeros(3, R, R, dtype=torch.uint8), "error"),
    ("tensor_bool", lambda: torch.zeros(3, R, R, dtype=torch.bool), "error"),
    ("tensor_complex", lambda: torch.zeros(3, R, R, dtype=torch.complex64), "error"),
    ("tensor_nan", lambda: torch.full((3, R, R), float("nan")), "error"),
    ("tensor_inf", lambda: torch.full((3, R, R), float("inf")), "error"),
    ("tensor_0_255", lambda: torch.full((3, R, R), 200.0), "any"),
    ("tensor_meta_device", lambda: torch.zeros(3, R, R, device="meta"), "error"),
    ("numpy_hwc_uint8", lambda: np.zeros((R, R, 3), dtype=np.uint8), "any"),
    ("numpy_object", lambda: np.array([None], dtype=object), "error"),
    ("none", lambda: None, "error"),
    ("int", lambda: 5, "error"),
    ("bytes_png", lambda: FILES[0][2], "error"),
    ("empty_list", lambda: [], "error"),
    ("list_with_none", lambda: [None], "error"),
    ("dict", lambda: {"image": 1}, "error"),
]
OBJECT_IDS = [o[0] for o in OBJECTS]


@pytest.mark.parametrize("name, make, expect", OBJECTS, ids=OBJECT_IDS)
def test_api_caption_object(case, fuzz_model, name, make, expect):
    image = make()
    case.api(lambda: fuzz_model.caption(image, options=OPTS), expect=expect, check=_text)


CHAT_OBJECTS = ["pil_1x1", "pil_0x0", "pil_cmyk", "pil_i16", "tensor_ok", "tensor_batch2", "tensor_wrong_size",
                "tensor_nan", "tensor_uint8", "none", "int", "bytes_png", "list_with_none", "dict"]


@pytest.mark.parametrize("name", CHAT_OBJECTS)
def test_api_chat_image_object(case, fuzz_model, name):
    _, make, expect = OBJECTS[OBJECT_IDS.index(name)]
    image = make()
    images = image if isinstance(image, list) else [image]
    session = fuzz_model.chat(options=OPTS)
    case.api(lambda: session.send(text="what is this?", images=images), expect=expect, check=_text)


@pytest.mark.parametrize("images, expect", [("not-a-list.png", "error"), (5, "error"), (None, "any"),
                                            ({"a": 1}, "error")], ids=["str", "int", "none", "dict"])
def test_api_chat_images_argument_type(case, fuzz_model, images, expect):
    session = fuzz_model.chat(options=OPTS)
    case.api(lambda: session.send(text="hi", images=images), expect=expect, check=_text)
