"""Dialog files that try to escape the output directory, nest too deeply or have wrong types; output
directories that are files or hold an earlier run; the chat CLI's exit codes."""

import json
import os

import pytest

from aromni.cli.main import main
from aromni.errors import InputError
from aromni.inference.dialogs import DialogRunner, check_dialog_id, normalize_dialogs, read_dialog_file
from aromni.utils.io import JSONNestingError, loads_json, read_json


def tree(root):
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, ds, fs in os.walk(root) for n in ds + fs)


BAD_IDS = ["../../x", "../escape", "/abs/path", "a/b", "a\\b", "..", ".", "", "   ", ".hidden", "x\ny", "tab\t",
           "batch_log.json", "d" * 201, "\ud800"]


@pytest.mark.parametrize("did", BAD_IDS)
def test_unsafe_dialog_ids_are_refused_before_anything_runs(did):
    with pytest.raises(InputError, match="dialog_id"):
        normalize_dialogs([{"dialog_id": did, "turns": [{"text": "hi"}]}], "d.json")
    if did == "":
        return  # an empty turn-level id means "same dialog" (as in the official runner)
    with pytest.raises(InputError, match="dialog 'ok' turn 2: dialog_id"):  # a turn's own id starts a folder too
        normalize_dialogs([{"dialog_id": "ok", "turns": [{"text": "hi"}, {"text": "x", "dialog_id": did}]}])


def test_good_dialog_ids_pass():
    for did in ("d1", "dialog_0001", "Ärger-1.2", "x" * 200, "a b"):
        assert check_dialog_id(did, "here") == did
    out = normalize_dialogs([{"dialog_id": 7, "turns": []}, {"dialog_id": None, "turns": []}])
    assert [d["dialog_id"] for d in out] == ["7", "dialog_0001"]
    with pytest.raises(InputError, match="'dialog_id' must be a string, got dict"):
        normalize_dialogs([{"dialog_id": {"a": 1}, "turns": []}])
    with pytest.raises(InputError, match="got list \\(empty\\)"):
        normalize_dialogs([])


def test_runner_never_writes_outside_even_without_normalize(tiny_model, tmp_path):
    out = tmp_path / "a" / "out"
    log = DialogRunner(tiny_model, out).run([{"dialog_id": "../../escaped", "turns": [{"text": "hi"}]},
                                             {"dialog_id": "ok", "turns": [{"text": "x", "dialog_id": "/abs"}]}])
    assert [m["error"] is not None for m in log] == [True, True]
    assert "dialog_id '../../escaped' starts with '.'" in log[0]["error"]
    assert tree(tmp_path) == ["a", "a/out", "a/out/batch_log.json"]


def test_symlinked_dialog_folder_is_not_followed(tiny_model, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "d1")
    log = DialogRunner(tiny_model, out, overwrite=True).run([{"dialog_id": "d1", "turns": [{"text": "hi"}]}])
    assert "does not name a folder inside" in log[0]["error"] and list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("content", [
    "[" * 4000 + "]" * 4000,
    '{"turns": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"dialog_id": "a", "turns": []}\n{"turns": ' + "[" * 3000 + "]" * 3000 + "}\n",  # JSONL
])
def test_deeply_nested_json_is_a_clean_error(tmp_path, content):
    p = tmp_path / "deep.json"
    p.write_text(content)
    with pytest.raises(JSONNestingError, match="nested too deeply"):
        read_dialog_file(p)


def test_shared_json_readers(tmp_path):
    with pytest.raises(InputError, match="nested too deeply"):
        loads_json("[" * 3000 + "]" * 3000, "x")
    with pytest.raises(InputError, match="not valid JSON"):
        loads_json("9" * 5000, "x")  # over Python's int digit limit: a ValueError, not a JSONDecodeError
    p = tmp_path / "deep.json"
    p.write_text("{" + '"a": {' * 3000 + "}" * 3001)
    with pytest.raises(InputError, match="deep.json: JSON nested too deeply"):
        read_json(p)
    with pytest.raises(InputError, match="not a file"):
        read_json(tmp_path)
    p.write_bytes(b"\xff\xfe{}")
    with pytest.raises(InputError, match="not UTF-8"):
        read_json(p)


def test_output_dir_checks(tiny_model, tmp_path):
    (tmp_path / "file").write_text("precious")
    with pytest.raises(InputError, match="exists and is not a directory"):
        DialogRunner(tiny_model, tmp_path / "file").run([{"dialog_id": "d", "turns": [{"text": "hi"}]}])
    assert (tmp_path / "file").read_text() == "precious"
    out = tmp_path / "out"
    dialogs = [{"dialog_id": "d1", "turns": [{"text": "hi"}]}]
    DialogRunner(tiny_model, out).run(dialogs)
    with pytest.raises(InputError, match="already exists and is not empty"):
        DialogRunner(tiny_model, out).run(dialogs)
    (out / "notes.txt").write_text("mine")
    log = DialogRunner(tiny_model, out, overwrite=True).run([{"dialog_id": "d2", "turns": [{"text": "yo"}]}])
    # the earlier run's dialog (named in its batch_log.json) is gone, the user's file stays, turns restart at 1
    assert sorted(p.name for p in out.iterdir()) == ["batch_log.json", "d2", "notes.txt"]
    assert log[0]["turn_index"] == 1 and json.loads((out / "batch_log.json").read_text()) == log


def chat_cli(bundle, inp, out, *extra):
    return main(["chat", "--model", str(bundle), "--input", str(inp), "--output-dir", str(out),
                 "--max-new-tokens", "4", "--seed", "0", *extra])


def err_lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_chat_cli_refuses_escapes_files_and_reruns(tiny_bundle, tmp_path, capsys):
    inp = tmp_path / "d.json"
    inp.write_text(json.dumps([{"dialog_id": "../../x", "turns": [{"text": "hi"}]}]))
    assert chat_cli(tiny_bundle, inp, tmp_path / "out") == 2
    err = err_lines(capsys)
    assert len(err) == 1 and "dialog_id '../../x' starts with '.'" in err[0]
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "x").exists()
    (tmp_path / "afile").write_text("mine")
    inp.write_text(json.dumps([{"dialog_id": "d1", "turns": [{"text": "hi"}, {"text": "again"}]}]))
    assert chat_cli(tiny_bundle, inp, tmp_path / "afile") == 2
    assert err_lines(capsys) == [f"error: {tmp_path / 'afile'} exists and is not a directory "
                                 "(choose a new or empty --output-dir)"]
    assert chat_cli(tiny_bundle, inp, tmp_path / "out") == 0
    assert chat_cli(tiny_bundle, inp, tmp_path / "out") == 2
    err = err_lines(capsys)
    assert len(err) == 1 and "already exists and is not empty" in err[0] and "--overwrite" in err[0]
    assert chat_cli(tiny_bundle, inp, tmp_path / "out", "--overwrite", "--json") == 0
    turns = sorted(p.name[:9] for p in (tmp_path / "out" / "d1").iterdir())
    assert turns == ["turn_0001", "turn_0002"]  # replaced, not appended as turns 3 and 4
    inp.write_text("[" * 4000 + "]" * 4000)
    assert chat_cli(tiny_bundle, inp, tmp_path / "out2") == 2
    err = err_lines(capsys)
    assert len(err) == 1 and "nested too deeply" in err[0]
