"""Fuzz: dialog files (JSON/JSONL in the official ``inference_chat.py`` schema) through ``aromni chat --input F
--output-dir OUT`` and the Python API (``read_dialog_file`` + ``normalize_dialogs`` + ``DialogRunner``): wrong
types, missing fields, unknown roles, deep nesting, ``dialog_id`` path traversal, huge files, non-UTF-8 bytes,
and reruns into an existing output directory."""

from __future__ import annotations

import json
import re

import pytest
from fuzzparts import MAX_NEW, rand_bytes, task_args

from aromni.errors import AromniError

FAMILY = "dialogs"

OPTS = {"max_new_tokens": MAX_NEW, "seed": 0}
#: A turn error that is really a crash: the runner caught a Python exception and logged "TypeName: message".
#: File-system errors (OSError and its subclasses) on user paths are user errors.
CRASH = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception))\b")
OS_ERRORS = {"OSError", "FileNotFoundError", "IsADirectoryError", "NotADirectoryError", "PermissionError"}


def _is_crash(err: str) -> bool:
    m = CRASH.match(err)
    return bool(m) and m.group(1).rsplit(".", 1)[-1] not in OS_ERRORS


class TurnsFailed(AromniError):
    """The runner finished and logged failed turns (its documented way of reporting bad turns)."""


def _j(obj) -> str:
    return json.dumps(obj)


def _turn(**kw):
    return _j([kw])


def _dialog(did, turns=None):
    return _j({"dialog_id": did, "turns": turns if turns is not None else [{"text": "hi"}]})


DIALOGS = [
    ("valid", _turn(text="hello"), "ok"),
    ("valid_two_dialogs", _j([{"dialog_id": "a", "turns": [{"text": "hi"}]},
                              {"dialog_id": "b", "turns": [{"text": "yo"}, {"text": "again"}]}]), "ok"),
    ("valid_jsonl", '{"text": "hi"}\n{"text": "more"}\n', "ok"),
    ("official_fields_ignored", _turn(text="hi", speaker_wav="x.wav", prompt_text="p", silence_head_sec=0.1), "ok"),
    ("empty_file", b"", "error"),
    ("whitespace_only", " \n\t \n", "error"),
    ("json_null", "null", "error"),
    ("json_number", "42", "error"),
    ("json_string", '"hello"', "error"),
    ("json_true", "true", "error"),
    ("empty_list", "[]", "error"),
    ("empty_object", "{}", "error"),
    ("turns_not_list", '{"turns": 5}', "error"),
    ("turns_is_object", '{"turns": {"text": "hi"}}', "error"),
    ("turns_empty", '{"dialog_id": "d", "turns": []}', "any"),
    ("turn_is_number", '{"turns": [5]}', "error"),
    ("turn_is_list", '{"turns": [["hi"]]}', "error"),
    ("turn_empty_object", '{"turns": [{}]}', "error"),
    ("text_number", _turn(text=5), "error"),
    ("text_null", _turn(text=None), "error"),
    ("text_list", _turn(text=["a"]), "error"),
    ("text_object", _turn(text={"a": 1}), "error"),
    ("text_nan_literal", '[{"text": NaN}]', "error"),
    ("text_infinity_literal", '[{"text": Infinity}]', "error"),
    ("text_empty", _turn(text=""), "error"),
    ("image_paths_string", _turn(text="hi", image_paths="a.png"), "error"),
    ("image_paths_ints", _turn(text="hi", image_paths=[1]), "error"),
    ("image_paths_nested", _turn(text="hi", image_paths=[["a.png"]]), "error"),
    ("reset_string", _turn(text="hi", reset="yes"), "error"),
    ("reset_huge_number", '[{"text": "hi", "reset": 1e400}]', "error"),
    ("wav_path_number", _turn(wav_path=5), "error"),
    ("append_text_list", _turn(text="hi", user_append_text=["x"]), "error"),
    ("unknown_role_field", _turn(role="system", text="hi"), "any"),
    ("chatml_schema", _j([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]), "error"),
    ("duplicate_keys", '[{"text": 5, "text": "hi"}]', "any"),
    ("mixed_dialogs_and_turns", _j([{"turns": [{"text": "a"}]}, {"text": "b"}]), "error"),
    ("missing_image", _turn(text="hi", image_paths=["missing.png"]), "error"),
    ("missing_wav", _turn(wav_path="missing.wav"), "error"),
    ("wav_is_directory", _turn(wav_path="."), "error"),
    ("image_is_directory", _turn(text="hi", image_paths=["."]), "error"),
    ("image_dev_zero", _turn(text="hi", image_paths=["/dev/zero"]), "error"),
    ("wav_dev_urandom", _turn(wav_path="/dev/urandom"), "error"),
    ("dialog_id_traversal", _dialog("../../x"), "error"),
    ("dialog_id_traversal_deep", _dialog("a/../../../outside/evil"), "error"),
    ("dialog_id_absolute", _dialog("{OUTSIDE}/evil"), "error"),
    ("dialog_id_nul", _dialog("a\x00b"), "error"),
    ("dialog_id_dotdot", _dialog(".."), "error"),
    ("dialog_id_dot", _dialog("."), "error"),
    ("dialog_id_empty", _dialog(""), "error"),
    ("dialog_id_backslash", _dialog("a\\..\\..\\b"), "error"),
    ("dialog_id_too_long", _dialog("x" * 300), "error"),
    ("dialog_id_lone_surrogate", '{"dialog_id": "\\ud800", "turns": [{"text": "hi"}]}', "error"),
    ("dialog_id_newline", _dialog("a\nb"), "error"),
    ("dialog_id_batch_log", _dialog("batch_log.json"), "error"),
    ("dialog_id_int", _dialog(5), "ok"),
    ("dialog_id_object", _dialog({"a": 1}), "error"),
    ("dialog_id_list", _dialog(["a"]), "error"),
    ("turn_dialog_id_traversal", _turn(dialog_id="../x", text="hi"), "error"),
    ("turn_dialog_id_absolute", _turn(dialog_id="{OUTSIDE}/evil", text="hi"), "error"),
    ("turn_dialog_id_number", _turn(dialog_id=7, text="hi"), "error"),
    ("deep_list_nesting_5000", "[" * 5000 + "]" * 5000, "error"),
    ("deep_object_nesting_4000", '{"a":' * 4000 + "1" + "}" * 4000, "error"),
    ("deep_nesting_3000_in_turn", '{"turns": [{"text": "hi", "x": ' + "[" * 3000 + "]" * 3000 + "}]}", "any"),
    ("deep_nesting_jsonl_line", '{"text": "hi"}\n' + "[" * 5000 + "]" * 5000 + "\n", "error"),
    ("jsonl_bad_line", '{"text": "hi"}\n{bad json\n', "error"),
    ("jsonl_number_line", '{"text": "hi"}\n42\n', "error"),
    ("utf8_bom", "\ufeff" + _turn(text="hi"), "any"),
    ("utf16", _turn(text="hi").encode("utf-16"), "error"),
    ("latin1_bytes", b'[{"text": "caf\xe9"}]', "error"),
    ("invalid_utf8_in_string", b'[{"text": "\xff\xfe\xfd"}]', "error"),
    ("random_bytes", rand_bytes(4000, 11), "error"),
    ("nul_bytes", b"\x00" * 100, "error"),
    ("huge_text_turn", _turn(text="word " * 200000), "error"),
    ("many_empty_dialogs", _j([{"dialog_id": f"d{i}", "turns": []} for i in range(20000)]), "any"),
    ("huge_ignored_field", _j([{"text": "hi", "junk": "x" * (3 << 20)}]), "any"),
]
DIALOG_IDS = [d[0] for d in DIALOGS]


def _write(case, content):
    if isinstance(content, str):
        content = content.replace("{OUTSIDE}", str(case.outside).replace("\\", "\\\\"))
    return case.write("dialogs.json", content)


def _check_log(log) -> None:
    """Turn errors must be user errors, not crashes the runner caught and logged."""
    assert isinstance(log, list), type(log)
    for m in log:
        err = m.get("error") if isinstance(m, dict) else None
        if err and _is_crash(err):
            pytest.fail(f"a turn failed with a crash, not a user error: {err[:300]}")


def _check_cli_log(out_dir) -> None:
    log = out_dir / "batch_log.json"
    if log.is_file():
        _check_log(json.loads(log.read_text()))


def _run_api(model, path, out, base):
    from aromni.inference.dialogs import DialogRunner, normalize_dialogs, read_dialog_file

    dialogs = normalize_dialogs(read_dialog_file(path), str(path))
    runner = DialogRunner(model, out, base_dir=base, options=model.options("chat", OPTS))
    log = runner.run(dialogs)
    _check_log(log)
    failed = [m["error"] for m in log if m.get("error")]
    if failed:
        raise TurnsFailed(f"{len(failed)} turn(s) failed: {failed[0]}")
    return log


@pytest.mark.parametrize("name, content, expect", DIALOGS, ids=DIALOG_IDS)
def test_cli_chat_dialog_file(case, fuzz_bundle, name, content, expect):
    path = _write(case, content)
    out = case.out / "chat"
    case.cli(["chat", "--input", str(path), "--output-dir", str(out), *task_args(fuzz_bundle)], expect=expect)
    _check_cli_log(out)


@pytest.mark.parametrize("name, content, expect", DIALOGS, ids=DIALOG_IDS)
def test_api_dialog_runner(case, fuzz_model, name, content, expect):
    path = _write(case, content)
    case.api(lambda: _run_api(fuzz_model, path, case.out / "chat", case.inputs), expect=expect)


# ------------------------------------------------------------------------------------------------ input paths
@pytest.mark.parametrize("kind", ["missing", "directory", "dev_zero", "fifo"])
def test_cli_chat_input_not_a_file(case, fuzz_bundle, kind):
    import os

    path = {"missing": case.inputs / "nope.json", "directory": case.inputs, "dev_zero": "/dev/zero",
            "fifo": case.inputs / "fifo.json"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    case.cli(["chat", "--input", str(path), "--output-dir", str(case.out / "chat"), *task_args(fuzz_bundle)],
             expect="error")


def test_cli_chat_input_without_output_dir(case, fuzz_bundle):
    path = case.write("d.json", _turn(text="hi"))
    case.cli(["chat", "--input", str(path), *task_args(fuzz_bundle)], expect="error")


# ------------------------------------------------------------------------------------------------ reruns
def _chat(case, bundle, path, out, expect, extra=()):
    return case.cli(["chat", "--input", str(path), "--output-dir", str(out), *task_args(bundle), *extra],
                    expect=expect)


def test_cli_chat_rerun_same_dir_keeps_outputs(case, fuzz_bundle):
    path = case.write("d.json", _dialog("d1"))
    out = case.out / "chat"
    _chat(case, fuzz_bundle, path, out, "ok")
    case.protect_existing(out)
    _chat(case, fuzz_bundle, path, out, "error")


def test_cli_chat_existing_batch_log_not_overwritten(case, fuzz_bundle):
    path = case.write("d.json", _dialog("d1"))
    out = case.out / "chat"
    case.protect(out / "batch_log.json", b'[{"precious": true}]\n')
    _chat(case, fuzz_bundle, path, out, "error")


def test_cli_chat_existing_dialog_folder_not_overwritten(case, fuzz_bundle):
    path = case.write("d.json", _dialog("d1"))
    out = case.out / "chat"
    case.protect(out / "d1" / "turn_0001_deadbeef" / "decoded_text.txt")
    case.protect(out / "d1" / "turn_0001_deadbeef" / "meta.json", b"{}\n")
    _chat(case, fuzz_bundle, path, out, "error")


def test_cli_chat_unrelated_file_in_output_dir(case, fuzz_bundle):
    path = case.write("d.json", _dialog("d1"))
    out = case.out / "chat"
    case.protect(out / "notes.txt")
    _chat(case, fuzz_bundle, path, out, "any")


def test_cli_chat_output_dir_is_a_file(case, fuzz_bundle):
    path = case.write("d.json", _dialog("d1"))
    target = case.protect(case.out / "chat")
    _chat(case, fuzz_bundle, path, target, "error")


def test_cli_chat_output_dir_is_the_input_folder(case, fuzz_bundle):
    path = case.write("d.json", _dialog("d1"))
    case.protect_existing(path)
    _chat(case, fuzz_bundle, path, case.inputs, "error")


def test_api_dialog_runner_rerun_same_dir(case, fuzz_model):
    path = case.write("d.json", _dialog("d1"))
    out = case.out / "chat"
    case.api(lambda: _run_api(fuzz_model, path, out, case.inputs), expect="ok")
    case.protect_existing(out)
    case.api(lambda: _run_api(fuzz_model, path, out, case.inputs), expect="error")


def test_api_chat_session_turn_types(case, fuzz_model):
    session = fuzz_model.chat(options=OPTS)
    case.api(lambda: session.send(), expect="error")
