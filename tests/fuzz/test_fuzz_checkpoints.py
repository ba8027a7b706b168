"""Fuzz: checkpoints and bundles through ``aromni convert``, ``aromni vqgan convert``, ``aromni train`` (resume,
``model.init_from``, ``perceptual.table``), ``aromni caption --model`` and the API (``aromni.load``,
``aromni.models.load_decoder``, the trainer): pickles whose ``__reduce__`` payload would create the marker file,
wrong dtypes and shapes, corrupt safetensors headers, random bytes, broken ``config.json``.

The shared fuzz bundle is never touched: every case corrupts its own copy under ``case.inputs``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fuzzparts import (
    MAX_NEW,
    edit_json,
    edit_safetensors,
    legacy_payload,
    png_bytes,
    rand_bytes,
    retype_safetensors,
    run_api,
    safetensors_header,
    task_args,
    tiny_train_overrides,
    torch_payload,
)

FAMILY = "checkpoints"

OPTS = {"max_new_tokens": MAX_NEW, "seed": 0}


def _load(path):
    import aromni

    return aromni.load(str(path))


def _load_decoder(path):
    from aromni.models import load_decoder

    return load_decoder(path)


def _no_marker(case) -> None:
    assert not case.marker.exists(), "the pickle payload ran"


def _caption_cli(case, bundle: Path, expect: str):
    img = case.write("img.png", png_bytes("RGB", (8, 8)))
    case.cli(["caption", "--image", str(img), *task_args(bundle)], expect=expect)


# ------------------------------------------------------------------------------------------------ pickles
PAYLOAD_KINDS = {
    "torch_zip": lambda m: torch_payload(m),
    "torch_zip_wrapped_model": lambda m: torch_payload(m, wrap="model"),
    "torch_zip_bare_object": lambda m: torch_payload(m, wrap="bare"),
    "legacy_pickle_p2": lambda m: legacy_payload(m, 2),
    "legacy_pickle_p5": lambda m: legacy_payload(m, 5),
    "legacy_pickle_p0": lambda m: legacy_payload(m, 0),
}


def _meta_with_payload(case, fuzz_checkpoints, kind: str) -> Path:
    src = case.inputs / "meta"
    shutil.copytree(fuzz_checkpoints["meta"], src)
    for f in src.glob("consolidated*.pth"):
        f.unlink()
    (src / "consolidated.pth").write_bytes(PAYLOAD_KINDS[kind](case.marker))
    return src


@pytest.mark.parametrize("kind", list(PAYLOAD_KINDS))
def test_cli_convert_meta_pickle_payload(case, fuzz_checkpoints, kind):
    src = _meta_with_payload(case, fuzz_checkpoints, kind)
    case.cli(["convert", str(src), str(case.out / "dst"), "--to", "aromni"], expect="error")
    _no_marker(case)
    assert not (case.out / "dst").exists(), "a failed conversion left an output directory"


@pytest.mark.parametrize("kind", list(PAYLOAD_KINDS))
def test_api_load_decoder_meta_pickle_payload(case, fuzz_checkpoints, kind):
    src = _meta_with_payload(case, fuzz_checkpoints, kind)
    case.api(lambda: _load_decoder(src), expect="error")
    _no_marker(case)


@pytest.mark.parametrize("kind", ["torch_zip", "legacy_pickle_p2"])
def test_cli_convert_hf_bin_pickle_payload(case, fuzz_checkpoints, kind):
    src = case.inputs / "hf"
    shutil.copytree(fuzz_checkpoints["hf_bin"], src)
    (src / "pytorch_model.bin").write_bytes(PAYLOAD_KINDS[kind](case.marker))
    case.cli(["convert", str(src), str(case.out / "dst"), "--to", "hf-anole"], expect="error")
    _no_marker(case)


@pytest.mark.parametrize("kind", ["torch_zip", "legacy_pickle_p2"])
def test_api_load_decoder_hf_bin_pickle_payload(case, fuzz_checkpoints, kind):
    src = case.inputs / "hf"
    shutil.copytree(fuzz_checkpoints["hf_bin"], src)
    (src / "pytorch_model.bin").write_bytes(PAYLOAD_KINDS[kind](case.marker))
    case.api(lambda: _load_decoder(src / "pytorch_model.bin"), expect="error")
    _no_marker(case)


@pytest.mark.parametrize("where", ["model.safetensors", "model.pt", "pytorch_model.bin", "model.ckpt"])
def test_api_bundle_pickle_in_model_file(case, fuzz_bundle, where):
    b = case.copy_bundle()
    (b / "model.safetensors").unlink()
    (b / where).write_bytes(torch_payload(case.marker))
    case.api(lambda: _load(b), expect="error")
    _no_marker(case)


@pytest.mark.parametrize("where", ["model.safetensors", "pytorch_model.bin"])
def test_cli_bundle_pickle_in_model_file(case, fuzz_bundle, where):
    b = case.copy_bundle()
    (b / "model.safetensors").unlink()
    (b / where).write_bytes(torch_payload(case.marker))
    _caption_cli(case, b, "error")
    _no_marker(case)


@pytest.mark.parametrize("kind", ["torch_zip", "legacy_pickle_p2"])
def test_cli_vqgan_convert_pickle_payload(case, fuzz_checkpoints, kind):
    ckpt = case.write("vqgan.ckpt", PAYLOAD_KINDS[kind](case.marker))
    case.cli(["vqgan", "convert", "--yaml", str(fuzz_checkpoints["vqgan"] / "vqgan.yaml"), "--ckpt", str(ckpt),
              "--out", str(case.out / "tok")], expect="error")
    _no_marker(case)


def test_api_vqgan_from_chameleon_pickle_payload(case, fuzz_checkpoints):
    from aromni.tokenizers.image.vqgan import VQGAN

    ckpt = case.write("vqgan.ckpt", torch_payload(case.marker))
    case.api(lambda: VQGAN.from_chameleon(fuzz_checkpoints["vqgan"] / "vqgan.yaml", ckpt), expect="error")
    _no_marker(case)


def test_cli_import_official_wavtokenizer_pickle_payload(case, fuzz_checkpoints):
    ckpt = case.write("wavtokenizer.ckpt", torch_payload(case.marker))
    yml = case.write("wavtokenizer.yaml", "model:\n  init_args: {}\n")
    case.cli(["import-official", "--aromni", str(fuzz_checkpoints["meta"]), "--wavtokenizer-config", str(yml),
              "--wavtokenizer-ckpt", str(ckpt), "--out", str(case.out / "bundle")], expect="error")
    _no_marker(case)


# -- training: resume, init_from, perceptual table
def _resume_run(case, fuzz_run, tamper) -> Path:
    run = case.out / "run"
    shutil.copytree(fuzz_run, run)
    tamper(run / "checkpoints" / "step-00000002")
    return run


RESUME_TAMPER = {
    "trainer_state_payload": lambda d, m: (d / "trainer_state.pt").write_bytes(torch_payload(m)),
    "trainer_state_legacy_payload": lambda d, m: (d / "trainer_state.pt").write_bytes(legacy_payload(m)),
    "trainer_state_random": lambda d, m: (d / "trainer_state.pt").write_bytes(rand_bytes(2000, 21)),
    "trainer_state_empty": lambda d, m: (d / "trainer_state.pt").write_bytes(b""),
    "trainer_state_list": lambda d, m: torch.save([1, 2, 3], d / "trainer_state.pt"),
    "model_random": lambda d, m: (d / "model.safetensors").write_bytes(rand_bytes(5000, 22)),
    "model_truncated": lambda d, m: (d / "model.safetensors").write_bytes(
        (d / "model.safetensors").read_bytes()[:3000]),
    "perceptual_random": lambda d, m: (d / "perceptual.safetensors").write_bytes(rand_bytes(300, 23)),
    "config_invalid_json": lambda d, m: (d / "config.json").write_text("{nope"),
}
#: Damage the resume does not need to read (the run rebuilds the model from its own settings).
RESUME_HARMLESS = {"config_invalid_json"}


def _train_args(fuzz_synth, out, **extra):
    return ["train", "pretrain", *tiny_train_overrides(fuzz_synth, out, **{"optim.max_steps": 3, **extra})]


@pytest.mark.parametrize("kind", list(RESUME_TAMPER))
def test_cli_train_resume_tampered_checkpoint(case, fuzz_synth, fuzz_run, kind):
    run = _resume_run(case, fuzz_run, lambda d: RESUME_TAMPER[kind](d, case.marker))
    case.cli(_train_args(fuzz_synth, run), expect="any" if kind in RESUME_HARMLESS else "error", progress=True)
    _no_marker(case)


@pytest.mark.parametrize("kind", ["trainer_state_payload", "trainer_state_random", "model_truncated"])
def test_api_train_resume_tampered_checkpoint(case, fuzz_synth, fuzz_run, kind):
    from aromni.training.recipes import pretrain
    from aromni.training.trainer import Trainer

    run = _resume_run(case, fuzz_run, lambda d: RESUME_TAMPER[kind](d, case.marker))
    overrides = _train_args(fuzz_synth, run)[2:]
    case.api(lambda: run_api(lambda: Trainer(pretrain.config(None, overrides)).fit()), expect="error")
    _no_marker(case)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".bin"])
def test_cli_train_perceptual_table_pickle_payload(case, fuzz_synth, suffix):
    table = case.write("table" + suffix, torch_payload(case.marker))
    case.cli(_train_args(fuzz_synth, case.out / "run", **{"perceptual.table": str(table)}), expect="error",
             progress=True)
    _no_marker(case)


def test_api_train_perceptual_table_pickle_payload(case, fuzz_synth):
    from aromni.training.recipes import pretrain
    from aromni.training.trainer import Trainer

    table = case.write("table.pt", legacy_payload(case.marker))
    overrides = _train_args(fuzz_synth, case.out / "run", **{"perceptual.table": str(table)})[2:]
    case.api(lambda: run_api(lambda: Trainer(pretrain.config(None, overrides)).fit()), expect="error")
    _no_marker(case)


@pytest.mark.parametrize("kind", ["torch_zip", "legacy_pickle_p2"])
def test_cli_train_init_from_pickle_payload(case, fuzz_synth, fuzz_checkpoints, kind):
    src = _meta_with_payload(case, fuzz_checkpoints, kind)
    case.cli(_train_args(fuzz_synth, case.out / "run", **{"model.init_from": str(src)}), expect="error",
             progress=True)
    _no_marker(case)


# ------------------------------------------------------------------------------------------------ bundle weights
BIG = 1 << 60
WEIGHT_DTYPES = [("int8", torch.int8, "error"), ("uint8", torch.uint8, "error"), ("int64", torch.int64, "error"),
                 ("bool", torch.bool, "error"), ("complex64", torch.complex64, "error"),
                 ("float64", torch.float64, "any"), ("float16", torch.float16, "any"),
                 ("bfloat16", torch.bfloat16, "any")]


@pytest.mark.parametrize("name, dtype, expect", WEIGHT_DTYPES, ids=[w[0] for w in WEIGHT_DTYPES])
def test_api_bundle_weight_dtype(case, fuzz_bundle, name, dtype, expect):
    b = case.copy_bundle()
    retype_safetensors(b / "model.safetensors", dtype)
    case.api(lambda: _load(b).caption(png_image(), options=OPTS), expect=expect)


@pytest.mark.parametrize("name, dtype, expect", WEIGHT_DTYPES, ids=[w[0] for w in WEIGHT_DTYPES])
def test_cli_bundle_weight_dtype(case, fuzz_bundle, name, dtype, expect):
    b = case.copy_bundle()
    retype_safetensors(b / "model.safetensors", dtype)
    _caption_cli(case, b, expect)


def png_image():
    from PIL import Image

    return Image.new("RGB", (8, 8), (10, 200, 30))


def _first_matrix(state):
    return next(k for k, v in state.items() if v.dim() == 2)


STATE_EDITS = {
    "one_tensor_int8": lambda s: {**s, _first_matrix(s): s[_first_matrix(s)].to(torch.int8)},
    "one_tensor_complex": lambda s: {**s, _first_matrix(s): s[_first_matrix(s)].to(torch.complex64)},
    "transposed_matrix": lambda s: {**s, _first_matrix(s): s[_first_matrix(s)].t().contiguous()},
    "truncated_rows": lambda s: {**s, _first_matrix(s): s[_first_matrix(s)][:3].contiguous()},
    "scalar_for_matrix": lambda s: {**s, _first_matrix(s): torch.tensor(1.0)},
    "zero_size": lambda s: {**s, _first_matrix(s): torch.zeros(0, 5)},
    "missing_tensor": lambda s: {k: v for k, v in s.items() if k != _first_matrix(s)},
    "extra_tensor": lambda s: {**s, "evil.weight": torch.zeros(2, 2)},
    "nan_weights": lambda s: {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                              for k, v in s.items()},
    "empty_state": lambda s: {"x": torch.zeros(1)},
}


@pytest.mark.parametrize("name", list(STATE_EDITS))
def test_api_bundle_state_edit(case, fuzz_bundle, name):
    b = case.copy_bundle()
    edit_safetensors(b / "model.safetensors", STATE_EDITS[name])
    expect = "any" if name == "nan_weights" else "error"
    case.api(lambda: _load(b).caption(png_image(), options=OPTS), expect=expect)


@pytest.mark.parametrize("name", ["transposed_matrix", "missing_tensor", "one_tensor_int8", "nan_weights"])
def test_cli_bundle_state_edit(case, fuzz_bundle, name):
    b = case.copy_bundle()
    edit_safetensors(b / "model.safetensors", STATE_EDITS[name])
    _caption_cli(case, b, "any" if name == "nan_weights" else "error")


def _corruptions(original: bytes) -> dict[str, bytes]:
    header_len = int.from_bytes(original[:8], "little")
    return {
        "zero_byte": b"",
        "seven_bytes": original[:7],
        "huge_header_length": safetensors_header(b"{}", length=BIG),
        "header_longer_than_file": safetensors_header(b'{"a": 1}', length=len(original) * 4),
        "header_invalid_json": safetensors_header(b"{not json" + b" " * 20, tail=b"\x00" * 64),
        "header_not_object": safetensors_header(b"[1, 2, 3]", tail=b"\x00" * 64),
        "header_bad_dtype": safetensors_header(
            json.dumps({"w": {"dtype": "Q99", "shape": [2, 2], "data_offsets": [0, 16]}}), tail=b"\x00" * 16),
        "header_offsets_past_end": safetensors_header(
            json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}),
            tail=b"\x00" * 16),
        "header_negative_shape": safetensors_header(
            json.dumps({"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}), tail=b"\x00" * 16),
        "header_non_utf8": safetensors_header(b'{"\xff\xfe": 1}', tail=b"\x00" * 16),
        "truncated_half": original[: len(original) // 2],
        "truncated_in_header": original[: 8 + header_len // 2],
        "random_bytes": rand_bytes(len(original) // 4, 31),
        "pickle_bytes": legacy_payload(Path("/nonexistent/never")),
    }


CORRUPTIONS = list(_corruptions(b"\x10" + b"\x00" * 7 + b"{}" * 10))


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_api_bundle_corrupt_safetensors(case, fuzz_bundle, name):
    b = case.copy_bundle()
    f = b / "model.safetensors"
    f.write_bytes(_corruptions(f.read_bytes())[name])
    case.api(lambda: _load(b), expect="error")


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_cli_bundle_corrupt_safetensors(case, fuzz_bundle, name):
    b = case.copy_bundle()
    f = b / "model.safetensors"
    f.write_bytes(_corruptions(f.read_bytes())[name])
    _caption_cli(case, b, "error")


@pytest.mark.parametrize("sub", ["image", "speech"])
@pytest.mark.parametrize("name", ["random_bytes", "huge_header_length", "truncated_half"])
def test_api_bundle_corrupt_tokenizer_weights(case, fuzz_bundle, sub, name):
    b = case.copy_bundle()
    f = b / sub / "model.safetensors"
    f.write_bytes(_corruptions(f.read_bytes())[name])
    case.api(lambda: _load(b), expect="error")


@pytest.mark.parametrize("name", ["random_bytes", "truncated_half"])
def test_api_load_decoder_corrupt_safetensors(case, fuzz_bundle, name):
    b = case.copy_bundle()
    f = b / "model.safetensors"
    f.write_bytes(_corruptions(f.read_bytes())[name])
    case.api(lambda: _load_decoder(b), expect="error")


# ------------------------------------------------------------------------------------------------ config.json
def _del(*keys):
    def fn(raw):
        node = raw
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
    return fn


def _set(value, *keys):
    def fn(raw):
        node = raw
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return fn


CONFIG_EDITS = {
    "missing_decoder": (_del("decoder"), "error"),
    "missing_layout": (_del("layout"), "error"),
    "missing_format": (_del("format"), "error"),
    "missing_bundle_section": (_del("bundle"), "any"),
    "missing_dim": (_del("decoder", "dim"), "error"),
    "missing_vocab_size": (_del("decoder", "vocab_size"), "error"),
    "unknown_decoder_key": (_set(1, "decoder", "wormhole"), "error"),
    "negative_dim": (_set(-64, "decoder", "dim"), "error"),
    "zero_heads": (_set(0, "decoder", "n_heads"), "error"),
    "dim_string": (_set("sixty-four", "decoder", "dim"), "error"),
    "dim_float": (_set(64.5, "decoder", "dim"), "error"),
    "dim_null": (_set(None, "decoder", "dim"), "error"),
    "vocab_mismatch": (_set(600, "decoder", "vocab_size"), "error"),
    "max_seq_len_zero": (_set(0, "decoder", "max_seq_len"), "error"),
    "layout_string": (_set("compact", "layout"), "error"),
    "layout_empty_object": (_set({}, "layout"), "error"),
    "decoder_list": (_set([1, 2], "decoder"), "error"),
    "tokenizer_dir_traversal": (_set("../../outside", "bundle", "tokenizers", "image"), "error"),
    "tokenizer_dir_absolute": (_set("/etc", "bundle", "tokenizers", "image"), "error"),
    "tokenizer_unknown_modality": (_set("image", "bundle", "tokenizers", "smell"), "error"),
    "tokenizer_dir_number": (_set(5, "bundle", "tokenizers", "image"), "error"),
    "tokenizers_list": (_set(["text"], "bundle", "tokenizers"), "error"),
    "prompt_style_unknown": (_set("klingon", "bundle", "prompt_style"), "error"),
    "generation_negative_tokens": (_set({"max_new_tokens": -1}, "bundle", "generation"), "error"),
    "generation_bad_temperature": (_set({"text": {"temperature": "hot"}}, "bundle", "generation"), "error"),
    "generation_unknown_key": (_set({"warp_speed": 9}, "bundle", "generation"), "error"),
    "generation_list": (_set([1, 2], "bundle", "generation"), "error"),
}


@pytest.mark.parametrize("name", list(CONFIG_EDITS))
def test_api_bundle_config_edit(case, fuzz_bundle, name):
    fn, expect = CONFIG_EDITS[name]
    b = case.copy_bundle()
    edit_json(b / "config.json", fn)
    case.api(lambda: _load(b).caption(png_image(), options=OPTS), expect=expect)


@pytest.mark.parametrize("name", ["missing_decoder", "missing_layout", "negative_dim", "vocab_mismatch",
                                  "tokenizer_dir_traversal", "generation_negative_tokens", "decoder_list"])
def test_cli_bundle_config_edit(case, fuzz_bundle, name):
    fn, expect = CONFIG_EDITS[name]
    b = case.copy_bundle()
    edit_json(b / "config.json", fn)
    _caption_cli(case, b, expect)


RAW_CONFIGS = {
    "invalid_json": b"{\"format\": \"aromni\",",
    "empty": b"",
    "non_utf8": b"{\"format\": \"aromni\xff\"}",
    "json_list": b"[1, 2, 3]",
    "json_null": b"null",
    "deep_nesting": b"[" * 5000 + b"]" * 5000,
    "nan_values": b"{\"format\": \"aromni\", \"decoder\": {\"dim\": NaN}}",
}


@pytest.mark.parametrize("name", list(RAW_CONFIGS))
def test_api_bundle_raw_config(case, fuzz_bundle, name):
    b = case.copy_bundle()
    (b / "config.json").write_bytes(RAW_CONFIGS[name])
    case.api(lambda: _load(b), expect="error")


@pytest.mark.parametrize("name", ["invalid_json", "deep_nesting", "non_utf8"])
def test_cli_bundle_raw_config(case, fuzz_bundle, name):
    b = case.copy_bundle()
    (b / "config.json").write_bytes(RAW_CONFIGS[name])
    _caption_cli(case, b, "error")


def test_api_bundle_config_is_directory(case, fuzz_bundle):
    b = case.copy_bundle()
    (b / "config.json").unlink()
    (b / "config.json").mkdir()
    case.api(lambda: _load(b), expect="error")


TOKENIZER_EDITS = {
    "image_config_no_type": ("image/config.json", lambda raw: raw.pop("type")),
    "speech_unknown_type": ("speech/config.json", _set("wavnet9000", "type")),
    "image_negative_resolution": ("image/config.json", _set(-16, "vqgan", "resolution")),
    "speech_zero_hop": ("speech/config.json", _set(0, "config", "hop_length")),
    "image_codebook_mismatch": ("image/config.json", _set(33, "vqgan", "n_embed")),
}


@pytest.mark.parametrize("name", list(TOKENIZER_EDITS))
def test_api_bundle_tokenizer_config_edit(case, fuzz_bundle, name):
    rel, fn = TOKENIZER_EDITS[name]
    b = case.copy_bundle()
    edit_json(b / rel, fn)
    case.api(lambda: _load(b), expect="error")


@pytest.mark.parametrize("name, data", [("invalid_json", b"{oops"), ("random", rand_bytes(500, 41)),
                                        ("empty", b"")], ids=["invalid_json", "random", "empty"])
def test_api_bundle_text_tokenizer_corrupt(case, fuzz_bundle, name, data):
    b = case.copy_bundle()
    (b / "text" / "tokenizer.json").write_bytes(data)
    case.api(lambda: _load(b), expect="error")


def test_api_bundle_tokenizer_dir_missing(case, fuzz_bundle):
    b = case.copy_bundle()
    shutil.rmtree(b / "speech")
    case.api(lambda: _load(b), expect="error")


@pytest.mark.parametrize("what", ["missing", "file", "empty_dir", "toy_lookalike"])
def test_api_load_not_a_bundle(case, what):
    path = {"missing": case.inputs / "nope", "file": case.write("f.bin", b"x"), "empty_dir": case.inputs,
            "toy_lookalike": "toy"}[what]
    case.api(lambda: _load(path), expect="any" if what == "toy_lookalike" else "error")


# ------------------------------------------------------------------------------------------------ convert
def test_cli_convert_bundle_to_hf_ok(case, fuzz_bundle):
    case.cli(["convert", str(fuzz_bundle), str(case.out / "hf"), "--to", "hf"], expect="ok")


@pytest.mark.parametrize("fmt", ["meta", "aromni", "hf-anole"])
def test_cli_convert_roundtrip_ok(case, fuzz_checkpoints, fmt):
    case.cli(["convert", str(fuzz_checkpoints["meta"]), str(case.out / "dst"), "--to", fmt], expect="ok")


def test_cli_convert_shard_size_zero(case, fuzz_bundle):
    case.cli(["convert", str(fuzz_bundle), str(case.out / "dst"), "--to", "hf", "--max-shard-gb", "0"], expect="any")


@pytest.mark.parametrize("flags", [["--to", "hf", "--max-shard-gb", "-1"],
                                   ["--to", "hf", "--max-shard-gb", "nan"], ["--to", "hf", "--max-shard-gb", "inf"],
                                   ["--to", "meta", "--shards", "0"], ["--to", "meta", "--shards", "-2"],
                                   ["--to", "meta", "--shards", "1000"], ["--to", "aromni", "--shards", "2"]],
                         ids=["shard_gb_neg", "shard_gb_nan", "shard_gb_inf", "shards_0", "shards_neg",
                              "shards_1000", "shards_not_meta"])
def test_cli_convert_bad_flags(case, fuzz_bundle, flags):
    case.cli(["convert", str(fuzz_bundle), str(case.out / "dst"), *flags], expect="error")


def test_cli_convert_existing_destination_kept(case, fuzz_bundle):
    dst = case.out / "dst"
    case.protect(dst / "precious.txt")
    case.cli(["convert", str(fuzz_bundle), str(dst), "--to", "aromni"], expect="error")


def test_cli_convert_destination_is_a_file(case, fuzz_bundle):
    dst = case.protect(case.out / "dst")
    case.cli(["convert", str(fuzz_bundle), str(dst), "--to", "aromni"], expect="error")


def test_cli_convert_into_itself(case, fuzz_bundle):
    b = case.copy_bundle()
    case.protect_existing(b)
    case.cli(["convert", str(b), str(b), "--to", "aromni", "--overwrite"], expect="error")


@pytest.mark.parametrize("what", ["missing", "random_file", "empty_dir", "params_only"])
def test_cli_convert_bad_source(case, what):
    if what == "missing":
        src = case.inputs / "nope"
    elif what == "random_file":
        src = case.write("weights.safetensors", rand_bytes(1000, 51))
    elif what == "empty_dir":
        src = case.inputs / "empty"
        src.mkdir()
    else:
        src = case.inputs / "meta"
        case.write("meta/params.json", '{"dim": 8, "n_layers": 1, "n_heads": 1, "vocab_size": 10}')
    case.cli(["convert", str(src), str(case.out / "dst"), "--to", "aromni"], expect="error")


@pytest.mark.parametrize("name", ["params_missing_dim", "params_negative_layers", "params_string_heads",
                                  "wrong_dtype_shard", "wrong_shape_shard", "model_parallel_mismatch"])
def test_cli_convert_broken_meta(case, fuzz_checkpoints, name):
    src = case.inputs / "meta"
    shutil.copytree(fuzz_checkpoints["meta"], src)
    params = src / "params.json"
    shard = next(src.glob("consolidated*.pth"))
    if name == "params_missing_dim":
        edit_json(params, lambda raw: (raw.get("model", raw)).pop("dim"))
    elif name == "params_negative_layers":
        edit_json(params, lambda raw: (raw.get("model", raw)).__setitem__("n_layers", -1))
    elif name == "params_string_heads":
        edit_json(params, lambda raw: (raw.get("model", raw)).__setitem__("n_heads", "four"))
    elif name == "wrong_dtype_shard":
        state = torch.load(shard, weights_only=True)
        torch.save({k: (v > 0) if v.is_floating_point() else v for k, v in state.items()}, shard)
    elif name == "wrong_shape_shard":
        state = torch.load(shard, weights_only=True)
        k = next(k for k, v in state.items() if v.dim() == 2)
        state[k] = state[k].t().contiguous()
        torch.save(state, shard)
    else:
        edit_json(src / "consolidate_params.json", lambda raw: raw.__setitem__("model_parallel_size", 4))
    case.cli(["convert", str(src), str(case.out / "dst"), "--to", "aromni"], expect="error")
