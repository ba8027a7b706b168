"""Damaged bundles (issue #9): every way a bundle directory can be broken is one CheckpointError naming the file,
never a SafetensorError, RecursionError, TypeError or AttributeError."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "inference"))

import aromni  # noqa: E402
import aromni.bundle as bundle_mod  # noqa: E402
from aromni.bundle import NAMED_BUNDLES, Bundle, resolve_bundle  # noqa: E402
from aromni.errors import CheckpointError, InputError  # noqa: E402
from aromni.toyworld.demo import find_bundle  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from tinyparts import tiny_decoder, tiny_image_tokenizer, tiny_speech_tokenizer, tiny_text_and_layout

    from aromni.bundle import save_bundle

    image, speech = tiny_image_tokenizer(), tiny_speech_tokenizer()
    text, layout = tiny_text_and_layout(image.codebook_size, speech.codebook_size)
    path = tmp_path_factory.mktemp("bundle") / "tiny"
    save_bundle(path, tiny_decoder(layout, max_seq_len=128), layout, text=text, image=image, speech=speech,
                generation={"max_new_tokens": 4})
    return path


@pytest.fixture
def copy(bundle, tmp_path) -> Path:
    dest = tmp_path / "b"
    shutil.copytree(bundle, dest)
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def _edit(path: Path, fn) -> None:
    raw = json.loads(path.read_text())
    out = fn(raw)
    path.write_text(json.dumps(raw if out is None else out))


def _refused(path: Path, match: str | None) -> CheckpointError:
    with pytest.raises(CheckpointError, match=match or None) as e:
        aromni.load(str(path))
    return e.value


def test_intact_bundle_loads(bundle):
    assert Bundle.load(bundle).speech is not None


@pytest.mark.parametrize("rel", ["model.safetensors", "image/model.safetensors", "speech/model.safetensors"])
@pytest.mark.parametrize("data", [b"", b"\x00" * 7, bytes(range(256)) * 40], ids=["empty", "short", "random"])
def test_random_bytes_in_safetensors_name_the_file(copy, rel, data):
    (copy / rel).write_bytes(data)
    err = _refused(copy, "safetensors")
    assert str(copy / rel) in str(err)


@pytest.mark.parametrize("rel", ["model.safetensors", "image/model.safetensors", "speech/model.safetensors",
                                 "text/tokenizer.json", "image/config.json", "speech/config.json",
                                 "text/config.json"])
def test_missing_files_name_the_file(copy, rel):
    (copy / rel).unlink()
    err = _refused(copy, "")
    assert str(copy / Path(rel).parent) in str(err)


def test_missing_tokenizer_directory(copy):
    shutil.rmtree(copy / "speech")
    _refused(copy, r"speech: tokenizer directory missing")
    (copy / "speech").write_text("a file, not a directory")
    _refused(copy, r"speech: tokenizer directory missing")


@pytest.mark.parametrize("rel", ["config.json", "image/config.json", "speech/config.json", "text/config.json"])
@pytest.mark.parametrize("data, match", [
    (b"{not json", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"\xff\xfe garbage", "UTF-8|JSON"),
    (b"[1, 2]", ""),
])
def test_malformed_config_json_is_a_checkpoint_error(copy, rel, data, match):
    (copy / rel).write_bytes(data)
    err = _refused(copy, match)
    assert str(copy) in str(err)


@pytest.mark.parametrize("edit, match", [
    (lambda c: {**c, "layout": [1]}, "layout"),
    (lambda c: {**c, "layout": "x"}, "layout"),
    (lambda c: {**c, "layout": {k: "x" for k in c["layout"]}}, "layout"),
    (lambda c: {**c, "layout": {**c["layout"], "vocab_size": 10**15}}, "vocab_size"),
    (lambda c: {**c, "layout": {**c["layout"], "image": {"start": 0, "size": 10**12}}}, "image range"),
    (lambda c: {**c, "bundle": [1]}, "bundle must be a mapping"),
    (lambda c: {**c, "bundle": {**c["bundle"], "tokenizers": [1]}}, "bundle.tokenizers"),
    (lambda c: {**c, "bundle": {**c["bundle"], "tokenizers": {"text": 5}}}, "bundle.tokenizers.text"),
    (lambda c: {**c, "bundle": {**c["bundle"], "tokenizers": {"text": "/etc"}}}, "inside the bundle"),
    (lambda c: {**c, "bundle": {**c["bundle"], "tokenizers": {"text": "../text"}}}, "inside the bundle"),
    (lambda c: {**c, "bundle": {**c["bundle"], "tokenizers": {"smell": "text"}}}, "unknown tokenizer modality"),
    (lambda c: {**c, "bundle": {**c["bundle"], "prompt_style": 5}}, "prompt_style"),
    (lambda c: {**c, "bundle": {**c["bundle"], "prompt_style": "zz"}}, "prompt_style"),
    (lambda c: {**c, "bundle": {**c["bundle"], "generation": [1]}}, "bundle.generation"),
    (lambda c: {**c, "bundle": {**c["bundle"], "generation": {"foo": 1}}}, "bundle.generation.*foo"),
    (lambda c: {**c, "bundle": {**c["bundle"], "generation": {"text": {"temperature": "hot"}}}}, "temperature"),
    (lambda c: {**c, "decoder": {**c["decoder"], "dim": "x"}}, "dim"),
    (lambda c: {**c, "decoder": {**c["decoder"], "dim": 128}}, "shape"),
    (lambda c: {**c, "decoder": {**c["decoder"], "vocab_size": 600}}, "600"),
])
def test_wrongly_typed_bundle_config_names_the_field(copy, edit, match):
    _edit(copy / "config.json", edit)
    err = _refused(copy, match)
    assert str(copy) in str(err)


@pytest.mark.parametrize("rel, edit, match", [
    ("image/config.json", lambda c: {**c, "vqgan": {**c["vqgan"], "ch": "x"}}, "ch"),
    ("image/config.json", lambda c: {**c, "vqgan": [1]}, "mapping"),
    ("image/config.json", lambda c: {**c, "type": 5}, "unknown tokenizer type"),
    ("speech/config.json", lambda c: {**c, "config": {**c["config"], "codebook_size": "x"}}, "codebook_size"),
    ("speech/config.json", lambda c: {**c, "config": {**c["config"], "codebook_size": 65}}, "does not match"),
    ("speech/config.json", lambda c: {**c, "format_version": "x"}, "format_version"),
    ("text/config.json", lambda c: {**c, "type": "chameleon_vqgan"}, "chameleon_vqgan"),
])
def test_malformed_tokenizer_configs_name_the_directory(copy, rel, edit, match):
    _edit(copy / rel, edit)
    err = _refused(copy, match)
    assert str(copy / Path(rel).parent) in str(err)


def test_weights_of_the_wrong_shape(copy):
    _edit(copy / "config.json",
          lambda c: {**c, "decoder": {**c["decoder"], "n_layers": c["decoder"]["n_layers"] + 1}})
    _refused(copy, "missing")
    shutil.copy(copy / "image" / "model.safetensors", copy / "model.safetensors")
    _refused(copy, "model.safetensors|tensor")


def test_named_bundles_resolve_without_the_toy_world(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if find_bundle() is not None:  # the registry names the directory the toy world ships
        assert resolve_bundle("toy") == NAMED_BUNDLES["toy"] == find_bundle()
    (tmp_path / "toy").mkdir()  # a local ./toy wins over the name
    assert resolve_bundle("toy") == type(NAMED_BUNDLES["toy"])("toy")
    assert resolve_bundle(tmp_path / "elsewhere") == tmp_path / "elsewhere"


def test_a_named_bundle_that_is_not_shipped_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(bundle_mod.NAMED_BUNDLES, "toy", tmp_path / "missing")
    with pytest.raises(InputError, match="ships no toy bundle"):
        bundle_mod.resolve_bundle("toy")
