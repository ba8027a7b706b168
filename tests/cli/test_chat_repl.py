"""The interactive chat: prompt marker, attach-time image checks, Ctrl-C during a reply cancels only that turn
(the history keeps no half turn), Ctrl-C or end of input at the prompt quits cleanly."""

from __future__ import annotations

import io

import pytest

import aromni
from aromni.cli.commands import chat
from aromni.cli.main import build_parser
from aromni.toyworld.demo import ASSETS


@pytest.fixture(scope="module")
def toy():
    return aromni.load("toy")


def parse(tmp_path, *extra):
    return build_parser().parse_args(["chat", "--model", "toy", "--max-new-tokens", "8", "--seed", "0",
                                      "--output-dir", str(tmp_path / "chat_out"), *extra])


class Capture:
    """Wraps ``model.chat`` to keep the session the REPL creates."""

    def __init__(self, model, monkeypatch):
        self.sessions = []
        original = model.chat

        def chat_(**kw):
            self.sessions.append(original(**kw))
            return self.sessions[-1]

        monkeypatch.setattr(model, "chat", chat_)


def repl(args, lines, model, *, interactive=False, stdin=None):
    out = io.StringIO()
    code = chat.run_repl(args, stdin or io.StringIO(lines), out, model=model, interactive=interactive)
    return code, out.getvalue()


def test_prompt_marker_and_eof(toy, tmp_path):
    code, text = repl(parse(tmp_path), "hello\n", toy, interactive=True)
    assert code == 0
    assert text.count(chat.PROMPT) == 2  # before "hello" and before the end of input
    assert text.index(chat.PROMPT) < text.index("assistant: ")
    code, text = repl(parse(tmp_path), "hello\n", toy, interactive=False)
    assert code == 0 and chat.PROMPT not in text and "assistant: " in text


def test_image_is_checked_when_attached(toy, tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not a png")
    lines = (f"/image {tmp_path / 'missing.png'}\n/image {tmp_path / 'junk.png'}\n/image\n"
             f"/image {ASSETS / 'demo_inputs' / 'image.png'}\nwhat is this\n")
    code, text = repl(parse(tmp_path), lines, toy)
    assert code == 0
    assert "missing.png: no such image file" in text and "(image attached: " + str(tmp_path) not in text
    assert "junk.png: not an image file" in text and "usage: /image PATH" in text
    assert text.count("(image attached:") == 1 and text.count("assistant: ") == 1


class Interrupting:
    """A generation stream that raises KeyboardInterrupt (Ctrl-C) after ``n`` steps."""

    def __init__(self, stream, n):
        self.stream, self.n = stream, n

    def __iter__(self):
        for i, step in enumerate(self.stream):
            if i == self.n:
                raise KeyboardInterrupt
            yield step

    @property
    def results(self):
        return self.stream.results


def test_ctrl_c_during_a_reply_cancels_only_that_turn(toy, tmp_path, monkeypatch):
    cap = Capture(toy, monkeypatch)
    original = toy.engine.generate
    calls = []

    def generate(prompts, options):
        calls.append(1)
        stream = original(prompts, options)
        return Interrupting(stream, 3) if len(calls) == 2 else stream

    monkeypatch.setattr(toy.engine, "generate", generate)
    code, text = repl(parse(tmp_path), "first\nsecond\nthird\n", toy)
    assert code == 0 and len(calls) == 3
    assert "(reply cancelled; this turn is not in the history)" in text
    session = cap.sessions[0]
    assert len(session.history) == 2  # first and third; the cancelled turn left nothing behind
    first = session.user_turn_ids(text="first")
    third = session.user_turn_ids(text="third")
    assert session.history[0][:len(first)] == first and session.history[1][:len(third)] == third


class CtrlCAtPrompt(io.StringIO):
    def readline(self, *a):
        raise KeyboardInterrupt


def test_ctrl_c_at_the_prompt_quits(toy, tmp_path):
    code, text = repl(parse(tmp_path), "", toy, interactive=True, stdin=CtrlCAtPrompt())
    assert code == 0 and text.endswith(chat.PROMPT + "\n")


def test_output_dir_that_is_a_file_is_refused(toy, tmp_path):
    (tmp_path / "chat_out").write_text("mine")
    from aromni.errors import InputError

    with pytest.raises(InputError, match="exists and is not a directory"):
        repl(parse(tmp_path), "hello\n", toy)
    assert (tmp_path / "chat_out").read_text() == "mine"
