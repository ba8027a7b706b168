"""The browser demo of ``aromni serve`` end to end: a real server on the toy bundle, driven by headless chromium.

The page (``src/aromni/serve/static``) is loaded from a uvicorn server running ``create_app`` in a background
thread; Playwright drives Debian's ``chromium`` (no ``playwright install``: the system browser is used and nothing
is downloaded). Every request the page makes that is not to the server's origin is blocked and recorded, so the
test also proves the page loads fully offline.

The server needs an API key, which the page sends from its key field. The page speaks a sentence (streamed PCM
chunks scheduled back to back with Web Audio), draws an image, and holds a two-turn chat (the first may draw, the
second carries a microphone recording from chromium's fake capture device), then the test checks the counters the
page keeps on ``window.aromniDemo`` and saves a screenshot (to ``tmp_path``, and to ``$AROMNI_DEMO_SCREENSHOT``
when set). Last, with the key field cleared, the server's 401 must show on the page with its message and hint.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("chromium not found on PATH: install Debian's chromium (make test does)", allow_module_level=True)
try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
except ImportError:
    pytest.skip("playwright is not installed: install the dev extras and Debian's chromium (make test does)",
                allow_module_level=True)
from servekit import live_server

from aromni.serve.app import create_app
from aromni.serve.settings import ServeSettings

CHROMIUM_ARGS = [
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
TIMEOUT_MS = 45_000
API_KEY = "web-demo-key"


@pytest.fixture(scope="module")
def server_url(toy_model):
    """A uvicorn server on 127.0.0.1 (a free port) serving the toy bundle, in a background thread; its /v1 routes
    need ``API_KEY``."""
    with live_server(create_app(toy_model, ServeSettings(host="127.0.0.1", port=0, api_key=API_KEY))) as url:
        yield url


def _wait(page, expr: str, what: str, timeout_ms: int = TIMEOUT_MS) -> None:
    """Waits until the JS expression is truthy; on timeout fails with the page's counters and last error."""
    try:
        page.wait_for_function(expr, timeout=timeout_ms)
    except PlaywrightError as exc:  # its TimeoutError, or the page went away
        state = page.evaluate("() => JSON.stringify(window.aromniDemo, (k, v) => k === 'audioContext' ? "
                              "(v && {state: v.state, currentTime: v.currentTime}) : v)")
        pytest.fail(f"timed out waiting for {what} ({expr}); aromniDemo={state}; "
                    f"status={page.text_content('#status')!r}: {exc}")


@pytest.mark.slow
def test_web_demo_streams_speech_image_and_chat(server_url, tmp_path):
    origin = urlsplit(server_url)
    page_errors: list[str] = []
    console_errors: list[str] = []
    foreign: list[str] = []
    chat_bodies: list[dict] = []
    auth_headers: list[str | None] = []

    def route(r):
        url = urlsplit(r.request.url)
        if url.scheme in ("data", "blob") or (url.scheme, url.netloc) == (origin.scheme, origin.netloc):
            r.continue_()
        else:
            foreign.append(r.request.url)
            r.abort()

    def on_request(req):
        if req.method == "POST" and req.url.endswith("/v1/chat/completions"):
            chat_bodies.append(json.loads(req.post_data or "{}"))
            auth_headers.append(req.headers.get("authorization"))

    t0 = time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route("**/*", route)
            page = context.new_page()
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("request", on_request)
            page.set_default_timeout(TIMEOUT_MS)

            page.goto(server_url + "/", wait_until="load")
            page.fill("#api-key", API_KEY)
            page.fill("#seed", "0")  # reproducible replies (and screenshot)
            assert page.title() == "aromni serve"
            _wait(page, "() => window.aromniDemo && window.aromniDemo.textDeltas === 0", "the page script")

            # Text to speech: chunks are received, decoded and scheduled back to back.
            page.fill("#tts-input", "the green star is small")
            page.click("#tts-send")
            _wait(page, "() => aromniDemo.audioChunksScheduled > 0 && !document.querySelector('#tts-send').disabled",
                  "the speech stream")
            time_after_tts = page.evaluate("() => aromniDemo.audioContext.currentTime")

            # Text to image, and the first chat turn while the image is drawn (the server batches both).
            page.fill("#t2i-input", "a big red circle on the left")
            page.click("#t2i-send")
            page.fill("#chat-input", "draw a small blue square at the top")
            page.uncheck("input[name=modality][value=audio]")
            page.check("input[name=modality][value=image]")
            page.click("#chat-send")
            _wait(page, "() => aromniDemo.imagesRendered > 0", "the generated image")
            _wait(page, "() => document.querySelectorAll('.msg.assistant').length === 1 && "
                        "!document.querySelector('#chat-send').disabled", "the first chat reply")

            # A microphone recording (chromium's fake device: a beep) goes with the second turn (text only).
            page.click("#record")
            _wait(page, "() => document.querySelector('#record').classList.contains('recording')", "recording")
            page.wait_for_timeout(1200)
            page.click("#record")
            _wait(page, "() => aromniDemo.recordings === 1", "the recording to be converted to WAV")
            page.fill("#chat-input", "what is in the picture?")
            page.uncheck("input[name=modality][value=image]")
            page.click("#chat-send")
            _wait(page, "() => document.querySelectorAll('.msg.assistant').length === 2 && "
                        "!document.querySelector('#chat-send').disabled", "the second chat reply")
            page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete)")

            demo = page.evaluate("""() => ({
                ...aromniDemo, audioContext: undefined,
                audioState: aromniDemo.audioContext.state,
                audioTime: aromniDemo.audioContext.currentTime,
                replies: [...document.querySelectorAll('.msg.assistant .text')].map(e => e.textContent),
                imageWidths: [...document.querySelectorAll('#t2i-out img')].map(i => i.naturalWidth),
                errorShown: !document.querySelector('#error').hidden,
            })""")
            page.screenshot(path=str(tmp_path / "serve_web_demo.png"), full_page=True)
            if target := os.environ.get("AROMNI_DEMO_SCREENSHOT"):
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=target, full_page=True)
            errors_before = (list(page_errors), list(console_errors))

            # A server error is shown with its message and hint, never swallowed: without the key, a 401.
            page.fill("#api-key", "")
            page.click("#t2i-send")
            _wait(page, "() => aromniDemo.lastError !== null", "the error to be shown")
            shown = page.evaluate("() => ({visible: !document.querySelector('#error').hidden, "
                                  "message: document.querySelector('#error-message').textContent, "
                                  "hint: document.querySelector('#error-hint').textContent})")
        finally:
            browser.close()
    elapsed = time.monotonic() - t0

    assert not foreign, f"the page requested URLs outside {server_url}: {foreign}"
    page_errors, console_errors = errors_before
    assert not page_errors, f"uncaught page errors: {page_errors}"
    assert not console_errors, f"console errors: {console_errors}"
    assert demo["lastError"] is None and not demo["errorShown"], f"the page showed an error: {demo['lastError']}"

    # Speech: every received chunk was scheduled, some seconds of it, and the audio clock ran.
    assert demo["audioChunksReceived"] > 0
    assert 0 < demo["audioChunksScheduled"] <= demo["audioChunksReceived"]
    assert demo["audioChunksEnded"] == demo["audioChunksScheduled"], "scheduled chunks did not play out"
    assert demo["audioSecondsScheduled"] > 0
    assert demo["audioState"] == "running"
    assert demo["audioTime"] > time_after_tts >= 0, (time_after_tts, demo["audioTime"])

    # Image: decoded by the browser.
    assert demo["imagesRendered"] >= 1
    assert demo["imageWidths"] and all(w > 0 for w in demo["imageWidths"]), demo["imageWidths"]

    # Chat: text streamed in; the second request carried the whole history and the recording.
    assert demo["textDeltas"] > 0
    assert any(r.strip() for r in demo["replies"]), demo["replies"]
    assert len(chat_bodies) == 2, chat_bodies
    first, second = chat_bodies
    assert first["stream"] is True and first["modalities"] == ["text", "image"] and first["seed"] == 0
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][0] == first["messages"][0]
    parts = second["messages"][2]["content"]
    assert [p["type"] for p in parts] == ["text", "input_audio"], parts
    assert second["modalities"] == ["text"]
    assert parts[1]["input_audio"]["format"] == "wav" and demo["lastRecordingBytes"] > 44

    assert auth_headers == [f"Bearer {API_KEY}"] * 2, auth_headers

    # The server's 401 on the page.
    assert shown["visible"] and "missing or wrong API key" in shown["message"], shown
    assert "Authorization: Bearer" in shown["hint"], shown
    assert elapsed < 90, f"the browser session took {elapsed:.1f} s"
