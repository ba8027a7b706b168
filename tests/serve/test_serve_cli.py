"""``aromni serve``: settings are refused before the model loads (one ``error:`` line, exit 2), a missing serve
extra is one line naming it, and the real command serves the toy model on a free port until interrupted."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from aromni.cli.commands import serve as serve_command
from aromni.cli.main import build_parser, main


def _fails(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, words", [
    (["serve", "--host", "0.0.0.0"], "--api-key"),
    (["serve", "--port", "70000"], "port"),
    (["serve", "--max-batch", "0"], "integer >= 1"),
    (["serve", "--timeout", "nan"], "finite"),
    (["serve", "--vivo", "runs/x"], "--vq"),
    (["serve", "--api-key", ""], "API key is empty"),
])
def test_bad_settings_fail_in_one_line_before_loading(capsys, monkeypatch, argv, words):
    monkeypatch.delenv("AROMNI_API_KEY", raising=False)
    monkeypatch.setattr(serve_command.common, "load_model", lambda args: pytest.fail("the model was loaded"))
    assert words in _fails(capsys, argv)


def test_flags_become_settings_and_the_key_may_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("AROMNI_API_KEY", "from-env")
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "0", "--max-batch", "4",
                                      "--max-concurrent", "3", "--max-queue", "0", "--timeout", "9",
                                      "--cors-origin", "http://a", "--cors-origin", "http://b"])
    s = serve_command.settings_from_args(args)
    assert (s.host, s.port, s.api_key, s.max_rows, s.max_concurrent, s.max_queue, s.request_timeout_s) == (
        "0.0.0.0", 0, "from-env", 4, 3, 0, 9.0)
    assert s.cors_origins == ("http://a", "http://b")
    args = build_parser().parse_args(["serve", "--api-key", "flag"])
    assert serve_command.settings_from_args(args).api_key == "flag"


def test_a_missing_serve_extra_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi -> ModuleNotFoundError
    monkeypatch.setattr(serve_command.common, "load_model", lambda args: pytest.fail("the model was loaded"))
    err = _fails(capsys, ["serve"])
    assert "'fastapi'" in err and 'pip install "aromni[serve]"' in err


def test_the_command_serves_until_interrupted(tmp_path):
    env = {**os.environ, "AROMNI_API_KEY": "k", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "aromni", "serve", "--model", "toy", "--port", "0",
                             "--max-batch", "3"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env)
    try:
        url, seen, deadline = None, [], time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
            m = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            url = m.group(1) if m else None
        assert url, "".join(seen)
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
        assert httpx.get(f"{url}/v1/models").status_code == 401
        r = httpx.post(f"{url}/v1/audio/speech", json={"input": "a red circle"}, headers={"Authorization": "Bearer k"},
                       timeout=60)
        assert r.status_code == 200 and r.content[:4] == b"RIFF"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
