"""The dialog runner: official input schema in, official output layout out, failing turns recorded."""

import json
import re

import numpy as np
import pytest
from tinyparts import biased

from aromni.bundle import Bundle
from aromni.errors import InputError
from aromni.inference.dialogs import DialogRunner, normalize_dialogs, read_dialog_file
from aromni.inference.omni import OmniModel
from aromni.tokenizers.speech.audio_io import save_wav


@pytest.fixture(scope="module")
def chatty(tiny_parts):
    text, layout, image, speech = tiny_parts
    decoder = biased(layout, {"boi": 9.0, "boa": 7.0, "eoa": 5.0, "eom": 2.0}, seed=1, max_seq_len=2048)
    return OmniModel(Bundle(decoder=decoder, layout=layout, text=text, image=image, speech=speech,
                            generation={"max_new_tokens": 120, "image": {"cfg": False}}))


def write_inputs(tmp_path):
    save_wav(tmp_path / "q.wav", np.sin(np.arange(6000) / 5.0).astype(np.float32) * 0.3, 16000)
    from PIL import Image

    Image.new("RGB", (24, 24), (10, 200, 30)).save(tmp_path / "pic.png")
    dialogs = [
        {"dialog_id": "d1", "turns": [
            {"text": "hello world"},
            {"wav_path": "q.wav", "image_paths": ["pic.png"], "user_append_text": "Describe this image."},
            {"text": "and now?", "image_paths": ["missing.png"]},
            {"text": "a big red circle", "speaker_wav": "ref.wav", "silence_head_sec": 0.2},
        ]},
        {"dialog_id": "d2", "turns": [{"text": "hello"}, {"text": "again", "reset": True}]},
    ]
    (tmp_path / "dialogs.json").write_text(json.dumps(dialogs))
    return tmp_path / "dialogs.json"


def test_runner_writes_the_official_layout_and_records_failures(chatty, tmp_path):
    path = write_inputs(tmp_path)
    dialogs = normalize_dialogs(read_dialog_file(path))
    out = tmp_path / "out"
    log = DialogRunner(chatty, out, base_dir=tmp_path, options=chatty.options("chat", seed=0)).run(dialogs)
    assert [m["dialog_id"] for m in log] == ["d1"] * 4 + ["d2"] * 2
    assert [m["turn_index"] for m in log] == [1, 2, 3, 4, 1, 2]
    assert json.loads((out / "batch_log.json").read_text()) == log
    bad = log[2]
    assert "missing.png" in bad["error"] and "no such image file" in bad["error"]
    assert all(m["error"] is None for i, m in enumerate(log) if i != 2), [m["error"] for m in log]
    assert any("speaker_wav" in n for n in log[3]["notes"]) and any("silence_head_sec" in n for n in log[3]["notes"])
    saved_images = saved_audio = 0
    for m in log:
        turn_dir = out / m["dialog_id"] / f"turn_{m['turn_index']:04d}_{m['run_uid']}"
        assert json.loads((turn_dir / "meta.json").read_text()) == m
        if m["error"]:
            continue
        assert (turn_dir / "decoded_text.txt").is_file()
        for p in m["saved_images"]:
            assert re.fullmatch(rf"{m['run_uid']}_seg\d+_img1_[0-9a-f]{{8}}\.png", p.split("/")[-1]) and \
                (turn_dir / p.split("/")[-1]).is_file()
        for p in m["saved_audios"]:
            assert re.fullmatch(rf"{m['run_uid']}_seg\d+_audio_[0-9a-f]{{8}}\.wav", p.split("/")[-1])
        saved_images += len(m["saved_images"])
        saved_audio += len(m["saved_audios"])
    assert saved_images and saved_audio, "the boosted model should reply with images and speech"
    # the wav turn resolved its relative path against base_dir; the failure did not reset the history
    assert log[1]["wav_path"] == str(tmp_path / "q.wav")
    assert log[3]["prompt_tokens"] > log[1]["prompt_tokens"]


def test_input_shapes_and_jsonl(tmp_path):
    turns = [{"text": "a"}, {"text": "b"}]
    assert normalize_dialogs(turns) == [{"dialog_id": "dialog_0000", "turns": turns}]
    assert normalize_dialogs({"turns": turns})[0]["dialog_id"] == "dialog_0000"
    p = tmp_path / "d.jsonl"
    p.write_text('{"dialog_id": "x", "turns": [{"text": "a"}]}\n{"dialog_id": "y", "turns": []}\n')
    assert [d["dialog_id"] for d in normalize_dialogs(read_dialog_file(p))] == ["x", "y"]


@pytest.mark.parametrize("content, match", [
    ("", "empty"),
    ("{not json", "not valid JSON"),
    ('{"dialog_id": "x", "turns": "hello"}', "not a list"),
    ('{"dialog_id": "x"}', "'turns' list"),
    ('[{"turns": []}, {"text": "a"}]', "mixes"),
    ("42", "not a JSON object"),
    ("[]", "expected a dialog"),
])
def test_bad_dialog_files_fail_clearly(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(InputError, match=match):
        normalize_dialogs(read_dialog_file(p), str(p))


def test_bad_turn_fields_are_recorded_per_turn(chatty, tmp_path):
    log = DialogRunner(chatty, tmp_path / "o").run(normalize_dialogs(
        [{"text": 5}, {"image_paths": "a.png", "text": "x"}, {"reset": "yes", "text": "x"}, {"user_append_text": ""}]))
    assert ["'text' must be a string" in log[0]["error"], "'image_paths' must be a list" in log[1]["error"],
            "'reset' must be true or false" in log[2]["error"], "needs 'text' or 'wav_path'" in log[3]["error"]] == \
        [True] * 4
