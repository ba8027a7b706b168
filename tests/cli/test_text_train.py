"""``aromni text train``: a BPE trained from text/.jsonl files, saved, loaded back, with the layout's specials."""

from __future__ import annotations

import json
import random

import pytest

from aromni.cli.main import main
from aromni.tokenizers.text import TextTokenizer
from aromni.vocab.layout import VocabLayout

WORDS = ["red", "blue", "green", "circle", "square", "triangle", "small", "large", "on", "the", "left", "right",
         "top", "bottom", "a", "is", "there", "what", "colour", "shape"]


def _sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]


@pytest.fixture
def corpus(tmp_path):
    lines = _sentences(300)
    txt = tmp_path / "a.txt"
    txt.write_text("\n".join(lines[:200]) + "\n\n", encoding="utf-8")  # the blank line is skipped
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text("".join(json.dumps({"text": s, "id": i}) + "\n" for i, s in enumerate(lines[200:])),
                     encoding="utf-8")
    return [txt, jsonl], lines


def _run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["text", "train", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_trains_saves_loads_and_round_trips(tmp_path, corpus, capsys):
    files, lines = corpus
    out = tmp_path / "tok"
    code, stdout, _ = _run(capsys, "--corpus", *files, "--out", out, "--vocab-size", 320, "--quiet")
    assert code == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["lines"] == len(lines) and summary["vocab_size"] == 320 and summary["specials"] == 16
    assert summary["bytes"] == sum(len(s.encode()) for s in lines)

    tk = TextTokenizer.from_pretrained(out)
    assert tk.vocab_size == 320
    assert summary["tokens"] == sum(len(tk.encode(s)) for s in lines)
    # 48 merges on a 20-word corpus: most words become single tokens (bytes alone give 1.0, see below).
    assert summary["bytes_per_token"] > 2.0
    for s in [*lines[:20], "an unseen sentence, with Ünïcödé and </s> typed by a user"]:
        assert tk.decode(tk.encode(s)) == s
    layout = VocabLayout.compact(tk.vocab_size - 16, 8, 8)
    tk.check_layout(layout)  # raises if a special string has another id than the layout's
    for role, name in layout.special_names.items():
        assert tk.token_to_id(name) == layout.special[role]
    assert tk.token_to_id("<reserved0>") == layout.reserved["reserved0"]
    assert layout.eos not in tk.encode("a </s> b")  # user text never becomes a control token


def test_refuses_a_non_empty_out_unless_overwrite(tmp_path, corpus, capsys):
    files, _ = corpus
    out = tmp_path / "tok"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    code, _, err = _run(capsys, "--corpus", *files, "--out", out, "--vocab-size", 300, "--quiet")
    assert code == 2 and "not empty" in err and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    # Specials + 256 bytes and no merges: exactly one token per byte.
    code, stdout, _ = _run(capsys, "--corpus", *files, "--out", out, "--vocab-size", 272, "--quiet", "--overwrite")
    assert code == 0 and json.loads(stdout)["bytes_per_token"] == 1.0
    assert TextTokenizer.from_pretrained(out).vocab_size == 272
    assert not (out / "keep.txt").exists()


def test_input_errors_are_one_line(tmp_path, corpus, capsys):
    files, _ = corpus
    out = tmp_path / "tok"
    code, _, err = _run(capsys, "--corpus", files[0], tmp_path / "missing.txt", "--out", out, "--vocab-size", 300)
    assert code == 2 and "missing.txt: no such corpus file" in err and "Traceback" not in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"caption": "no text"}\n')
    code, _, err = _run(capsys, "--corpus", bad, "--out", out, "--vocab-size", 300)
    assert code == 2 and "bad.jsonl:2: no string 'text' field" in err
    code, _, err = _run(capsys, "--corpus", files[0], "--out", out, "--vocab-size", 200)
    assert code == 2 and "too small" in err and "272" in err  # 16 specials + 256 bytes
    assert not out.exists()


def test_layout_file(tmp_path, corpus, capsys):
    files, _ = corpus
    path = tmp_path / "layout.json"
    path.write_text(json.dumps({"layout": VocabLayout.compact(290 - 16, 8, 8).to_dict()}))
    code, _, err = _run(capsys, "--corpus", *files, "--out", tmp_path / "x", "--vocab-size", 300, "--layout", path)
    assert code == 2 and "pass --vocab-size 290" in err
    code, _, _ = _run(capsys, "--corpus", *files, "--out", tmp_path / "tok", "--vocab-size", 290, "--layout", path)
    assert code == 0
    TextTokenizer.from_pretrained(tmp_path / "tok").check_layout(VocabLayout.compact(290 - 16, 8, 8))
    path.write_text(json.dumps(VocabLayout.aromni_7b().to_dict()))
    code, _, err = _run(capsys, "--corpus", *files, "--out", tmp_path / "y", "--vocab-size", 290, "--layout", path)
    assert code == 2 and "special/reserved ids are not 0.." in err
