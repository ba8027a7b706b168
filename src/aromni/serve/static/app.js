// Browser demo of `aromni serve`: chat (text, microphone, image in; text, speech, images out), text to speech
// and text to image against the server's OpenAI-style endpoints. Plain JS, no build step, no external URLs.
//
// Speech plays as it arrives: every base64 int16 PCM chunk becomes an AudioBuffer scheduled to start exactly
// where the previous one of the same stream ends (gapless chunked playback with Web Audio).
//
// window.aromniDemo holds counters the end-to-end test reads (tests/serve/test_serve_web_demo.py).
(() => {
  "use strict";

  const demo = (window.aromniDemo = {
    audioChunksReceived: 0,
    audioChunksScheduled: 0,
    audioSecondsScheduled: 0,
    audioChunksEnded: 0, // scheduled chunks that have played out (or were stopped)
    audioUnderruns: 0, // chunks that came after the previous one had finished playing (a gap)
    imagesRendered: 0,
    textDeltas: 0,
    lastError: null,
    requestsStarted: 0,
    requestsFinished: 0,
    recordings: 0,
    audioContext: null,
  });

  const $ = (id) => document.getElementById(id);
  const MODEL = "aromni";
  const RECORD_RATE = 16000; // what the recorded audio is resampled to before it is sent
  const LEAD_S = 0.05; // how far ahead of "now" a stream's first chunk (or one after an underrun) starts

  // ---------------------------------------------------------------- errors and status

  function showError(message, hint) {
    message = String(message || "Unknown error");
    hint = hint ? String(hint) : "";
    demo.lastError = { message, hint };
    $("error-message").textContent = message;
    $("error-hint").textContent = hint;
    $("error-hint").hidden = !hint;
    $("error").hidden = false;
    setStatus("Error: " + message);
  }

  function clearError() {
    $("error").hidden = true;
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  window.addEventListener("error", (e) => showError(e.message || "Script error"));
  window.addEventListener("unhandledrejection", (e) => {
    const r = e.reason;
    showError((r && r.message) || String(r), r && r.hint);
  });

  class ApiError extends Error {
    constructor(message, hint, status) {
      super(message);
      this.hint = hint || "";
      this.status = status || 0;
    }
  }

  function fromErrorBody(body, fallback, status) {
    const err = body && body.error;
    if (err && typeof err === "object") return new ApiError(err.message || fallback, err.hint, status);
    if (typeof err === "string") return new ApiError(err, "", status);
    if (body && body.detail !== undefined) {
      const d = body.detail;
      return new ApiError(typeof d === "string" ? d : JSON.stringify(d), "", status);
    }
    return null;
  }

  async function responseError(resp) {
    const fallback = `HTTP ${resp.status} ${resp.statusText || ""}`.trim();
    let text = "";
    try {
      text = await resp.text();
    } catch (_) {
      /* body unreadable: the status line says enough */
    }
    try {
      const e = fromErrorBody(JSON.parse(text), fallback, resp.status);
      if (e) return e;
    } catch (_) {
      /* not JSON */
    }
    let hint = text.trim().slice(0, 300);
    if (resp.status === 401 || resp.status === 403) hint = hint || "Check the API key field.";
    return new ApiError(fallback, hint, resp.status);
  }

  function reportFailure(what, err) {
    if (err && err.name === "AbortError") {
      setStatus(what + ": cancelled.");
      return;
    }
    const message = (err && err.message) || String(err);
    showError(what + " failed: " + message, err && err.hint);
  }

  // ---------------------------------------------------------------- HTTP

  const inflight = new Set(); // AbortControllers of running requests

  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = $("api-key").value.trim();
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  async function post(path, body, controller) {
    const resp = await fetch(path, {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!resp.ok) throw await responseError(resp);
    return resp;
  }

  // Parses a text/event-stream body into the payload of each `data:` field; yields strings.
  async function* sseData(resp) {
    if (!resp.body) throw new ApiError("The response has no body to stream.");
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    const take = function* (final) {
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0 || (final && buf.trim())) {
        let block;
        if (i >= 0) {
          block = buf.slice(0, i);
          buf = buf.slice(i + 2);
        } else {
          block = buf;
          buf = "";
        }
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5));
        if (data.length) yield data.join("\n");
      }
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        // Normalise CRLF / CR line ends, except a trailing CR whose LF may come in the next read.
        const end = buf.endsWith("\r") ? buf.length - 1 : buf.length;
        buf = buf.slice(0, end).replace(/\r\n?/g, "\n") + buf.slice(end);
        yield* take(false);
      }
      buf += decoder.decode();
      buf = buf.replace(/\r\n?/g, "\n");
      yield* take(true);
    } finally {
      reader.releaseLock();
    }
  }

  // Yields the parsed JSON events of an SSE response until `[DONE]`; an `error` event throws.
  async function* sseEvents(resp) {
    for await (const data of sseData(resp)) {
      if (data.trim() === "[DONE]") return;
      let obj;
      try {
        obj = JSON.parse(data);
      } catch (_) {
        throw new ApiError("The server sent an event that is not JSON.", data.slice(0, 200));
      }
      if (obj && obj.error) throw fromErrorBody(obj, "The server reported an error.", resp.status);
      yield obj;
    }
  }

  function track(fn) {
    return async (...args) => {
      const controller = new AbortController();
      inflight.add(controller);
      demo.requestsStarted++;
      try {
        return await fn(controller, ...args);
      } finally {
        inflight.delete(controller);
        demo.requestsFinished++;
      }
    };
  }

  // ---------------------------------------------------------------- PCM, WAV, base64

  function base64ToBytes(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function bytesToBase64(bytes) {
    let bin = "";
    const step = 0x8000;
    for (let i = 0; i < bytes.length; i += step) {
      bin += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
    }
    return btoa(bin);
  }

  // base64 little-endian int16 PCM -> Int16Array
  function pcm16FromBase64(b64) {
    const bytes = base64ToBytes(b64);
    const n = bytes.length >> 1;
    const view = new DataView(bytes.buffer, bytes.byteOffset, n * 2);
    const out = new Int16Array(n);
    for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true);
    return out;
  }

  function int16ToFloat32(pcm) {
    const out = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
    return out;
  }

  function float32ToInt16(samples) {
    const out = new Int16Array(samples.length);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      out[i] = s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
    }
    return out;
  }

  // Mono 16-bit PCM WAV file bytes.
  function wavBytes(pcm, sampleRate) {
    const data = pcm.length * 2;
    const buf = new ArrayBuffer(44 + data);
    const v = new DataView(buf);
    const str = (off, s) => {
      for (let i = 0; i < s.length; i++) v.setUint8(off + i, s.charCodeAt(i));
    };
    str(0, "RIFF");
    v.setUint32(4, 36 + data, true);
    str(8, "WAVE");
    str(12, "fmt ");
    v.setUint32(16, 16, true); // fmt chunk size
    v.setUint16(20, 1, true); // PCM
    v.setUint16(22, 1, true); // mono
    v.setUint32(24, sampleRate, true);
    v.setUint32(28, sampleRate * 2, true); // byte rate
    v.setUint16(32, 2, true); // block align
    v.setUint16(34, 16, true); // bits per sample
    str(36, "data");
    v.setUint32(40, data, true);
    for (let i = 0; i < pcm.length; i++) v.setInt16(44 + 2 * i, pcm[i], true);
    return new Uint8Array(buf);
  }

  function concatInt16(chunks) {
    const n = chunks.reduce((a, c) => a + c.length, 0);
    const out = new Int16Array(n);
    let off = 0;
    for (const c of chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }

  // ---------------------------------------------------------------- playback (Web Audio)

  let audioCtx = null;

  // The shared AudioContext; created (or resumed) from a user gesture where the browser asks for one.
  function audioContext() {
    if (!audioCtx) {
      const Ctor = window.AudioContext || window.webkitAudioContext;
      if (!Ctor) throw new ApiError("This browser has no Web Audio API: speech cannot be played.");
      audioCtx = new Ctor();
      demo.audioContext = audioCtx;
    }
    if (audioCtx.state === "suspended") audioCtx.resume().catch(() => {});
    return audioCtx;
  }

  const playing = new Set(); // AudioBufferSourceNodes scheduled and not yet ended

  // One stream of speech: chunks start back to back on the shared context's clock. Also keeps the samples so a
  // replayable <audio> element can be offered when the stream ends.
  class SpeechPlayer {
    constructor() {
      this.nextTime = 0;
      this.chunks = [];
      this.sampleRate = 0;
      this.seconds = 0;
      this.firstAt = 0;
      this.t0 = performance.now();
    }

    push(b64, sampleRate) {
      demo.audioChunksReceived++;
      const sr = Number(sampleRate) || this.sampleRate || 16000;
      const pcm = pcm16FromBase64(b64 || "");
      if (!pcm.length) return;
      if (!this.firstAt) this.firstAt = performance.now();
      if (!this.sampleRate) this.sampleRate = sr;
      if (sr === this.sampleRate) this.chunks.push(pcm);
      const ctx = audioContext();
      const buffer = ctx.createBuffer(1, pcm.length, sr);
      buffer.copyToChannel(int16ToFloat32(pcm), 0);
      const src = ctx.createBufferSource();
      src.buffer = buffer;
      src.connect(ctx.destination);
      // Back to back with the previous chunk; after an underrun (or for the first chunk) a small lead from now.
      const earliest = ctx.currentTime + LEAD_S;
      if (this.nextTime < earliest) {
        if (this.nextTime) demo.audioUnderruns++;
        this.nextTime = earliest;
      }
      src.start(this.nextTime);
      this.nextTime += buffer.duration;
      this.seconds += buffer.duration;
      playing.add(src);
      src.onended = () => {
        playing.delete(src);
        demo.audioChunksEnded++;
      };
      demo.audioChunksScheduled++;
      demo.audioSecondsScheduled += buffer.duration;
    }

    // An <audio controls> element with everything received, or null.
    replayElement() {
      if (!this.chunks.length) return null;
      const wav = wavBytes(concatInt16(this.chunks), this.sampleRate);
      const el = document.createElement("audio");
      el.controls = true;
      el.preload = "auto";
      el.src = URL.createObjectURL(new Blob([wav], { type: "audio/wav" }));
      return el;
    }

    summary() {
      if (!this.seconds) return "no audio";
      const first = this.firstAt ? ((this.firstAt - this.t0) / 1000).toFixed(2) : "?";
      const n = this.chunks.length;
      return `${this.seconds.toFixed(2)} s of speech, ${n} chunk${n === 1 ? "" : "s"}, first after ${first} s`;
    }
  }

  function stopAll() {
    for (const c of inflight) c.abort();
    for (const src of playing) {
      try {
        src.stop();
      } catch (_) {
        /* already stopped */
      }
    }
    playing.clear();
    setStatus("Stopped.");
  }

  // ---------------------------------------------------------------- images

  function imageElement(url, alt) {
    const img = document.createElement("img");
    img.alt = alt || "generated image";
    img.addEventListener("load", () => {
      demo.imagesRendered++;
    });
    img.addEventListener("error", () => showError("An image from the server could not be decoded."));
    img.src = url;
    return img;
  }

  function imageUrlOf(item) {
    if (!item) return null;
    if (typeof item === "string") return item;
    if (item.image_url) return typeof item.image_url === "string" ? item.image_url : item.image_url.url;
    if (item.b64_json) return "data:image/png;base64," + item.b64_json;
    if (item.url) return item.url;
    return null;
  }

  // ---------------------------------------------------------------- chat

  const messages = []; // the whole conversation, sent every turn
  const attachments = []; // {kind: "audio"|"image", ...} parts of the next user turn
  let chatBusy = false;

  function transcript() {
    return $("transcript");
  }

  function scrollDown() {
    const t = transcript();
    t.scrollTop = t.scrollHeight;
  }

  function bubble(role) {
    const empty = transcript().querySelector(".empty");
    if (empty) empty.remove();
    const div = document.createElement("div");
    div.className = "msg " + role;
    const who = document.createElement("div");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "aromni";
    const body = document.createElement("div");
    body.className = "body";
    div.append(who, body);
    transcript().append(div);
    scrollDown();
    return body;
  }

  function note(parent, text, cls) {
    const p = document.createElement("div");
    p.className = "note" + (cls ? " " + cls : "");
    p.textContent = text;
    parent.append(p);
    return p;
  }

  function renderAttachments() {
    const box = $("attachments");
    box.replaceChildren();
    attachments.forEach((a, i) => {
      const chip = document.createElement("div");
      chip.className = "chip";
      if (a.kind === "audio") {
        const label = document.createElement("span");
        label.textContent = `\u{1F3A4} ${a.seconds.toFixed(1)} s`;
        const el = document.createElement("audio");
        el.controls = true;
        el.src = a.blobUrl;
        chip.append(label, el);
      } else {
        const img = document.createElement("img");
        img.src = a.url;
        img.alt = "attached image";
        chip.append(img);
      }
      const rm = document.createElement("button");
      rm.type = "button";
      rm.className = "icon";
      rm.setAttribute("aria-label", "Remove attachment");
      rm.textContent = "\u00d7";
      rm.addEventListener("click", () => {
        attachments.splice(i, 1);
        renderAttachments();
      });
      chip.append(rm);
      box.append(chip);
    });
  }

  function modalities() {
    return [...document.querySelectorAll('input[name="modality"]:checked')].map((el) => el.value);
  }

  function seedValue() {
    const raw = $("seed").value.trim();
    if (!raw) return null;
    const n = Number(raw);
    return Number.isInteger(n) ? n : null;
  }

  function withSeed(body) {
    const seed = seedValue();
    if (seed !== null) body.seed = seed;
    return body;
  }

  const sendChat = track(async (controller) => {
    clearError();
    const text = $("chat-input").value.trim();
    const mods = modalities();
    if (!text && !attachments.length) {
      showError("Nothing to send.", "Type a message, record audio or attach an image first.");
      return;
    }
    if (!mods.length) {
      showError("No output modality selected.", "Tick at least one of text, audio or image.");
      return;
    }
    if (mods.includes("audio")) audioContext(); // inside the click: lets the browser start audio

    const parts = [];
    if (text) parts.push({ type: "text", text });
    for (const a of attachments) {
      if (a.kind === "audio") parts.push({ type: "input_audio", input_audio: { data: a.b64, format: "wav" } });
      else parts.push({ type: "image_url", image_url: { url: a.url } });
    }
    const content = parts.length === 1 && parts[0].type === "text" ? text : parts;
    const userMsg = { role: "user", content };
    messages.push(userMsg);

    const userBody = bubble("user");
    if (text) note(userBody, text, "text");
    for (const a of attachments) {
      if (a.kind === "audio") {
        const el = document.createElement("audio");
        el.controls = true;
        el.preload = "auto";
        el.src = a.blobUrl;
        userBody.append(el);
      } else {
        const img = document.createElement("img");
        img.src = a.url;
        img.alt = "your image";
        img.className = "thumb";
        userBody.append(img);
      }
    }
    const sentAttachments = attachments.splice(0);
    $("chat-input").value = "";
    renderAttachments();

    const body = bubble("assistant");
    body.classList.add("streaming");
    const textEl = document.createElement("div");
    textEl.className = "text";
    body.append(textEl);
    const player = new SpeechPlayer();
    let replyText = "";
    let spokenText = "";
    const replyImages = [];
    let finish = null;

    const req = withSeed({ model: MODEL, messages, modalities: mods, stream: true });

    setChatBusy(true);
    setStatus("Chat: waiting for the reply\u2026");
    try {
      const resp = await post("/v1/chat/completions", req, controller);
      for await (const ev of sseEvents(resp)) {
        const choice = ev.choices && ev.choices[0];
        if (!choice) continue;
        const delta = choice.delta || {};
        if (typeof delta.content === "string" && delta.content) {
          demo.textDeltas++;
          replyText += delta.content;
          textEl.textContent = replyText;
          setStatus("Chat: streaming\u2026");
        }
        if (delta.audio) {
          if (delta.audio.data) player.push(delta.audio.data, delta.audio.sample_rate);
          if (delta.audio.transcript) spokenText += delta.audio.transcript;
          setStatus("Chat: speaking\u2026");
        }
        for (const item of delta.images || []) {
          const url = imageUrlOf(item);
          if (!url) continue;
          replyImages.push(url);
          body.append(imageElement(url, "image from aromni"));
        }
        if (choice.finish_reason) finish = choice.finish_reason;
        scrollDown();
      }
      if (!replyText && spokenText) textEl.textContent = spokenText;
      const replay = player.replayElement();
      if (replay) body.append(replay);
      if (!replyText && !spokenText && !player.seconds && !replyImages.length) note(body, "(empty reply)", "dim");
      messages.push(assistantMessage(replyText || spokenText));
      setStatus(`Chat: done (${finish || "end of stream"}` + (player.seconds ? `; ${player.summary()})` : ")"));
    } catch (err) {
      if (err && err.name === "AbortError" && (replyText || replyImages.length)) {
        messages.push(assistantMessage(replyText)); // keep the partial reply in the history
      } else {
        // The turn did not happen: take it out of the history so the next one is consistent.
        const i = messages.lastIndexOf(userMsg);
        if (i >= 0) messages.splice(i, 1);
        body.parentElement.classList.add("failed");
        userBody.parentElement.classList.add("failed");
        if (!replyText) note(body, err && err.name === "AbortError" ? "(cancelled)" : "(failed)", "dim");
        if (!$("chat-input").value) $("chat-input").value = text;
        if (!attachments.length) {
          attachments.push(...sentAttachments);
          renderAttachments();
        }
      }
      reportFailure("Chat", err);
    } finally {
      body.classList.remove("streaming");
      setChatBusy(false);
    }
  });

  // The server takes assistant turns as text only (their speech and images are not fed back).
  function assistantMessage(text) {
    return { role: "assistant", content: text };
  }

  function setChatBusy(busy) {
    chatBusy = busy;
    $("chat-send").disabled = busy;
    $("chat-send").textContent = busy ? "\u2026" : "Send";
  }

  function clearChat() {
    messages.length = 0;
    transcript().replaceChildren();
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "New conversation.";
    transcript().append(p);
    clearError();
  }

  // ---------------------------------------------------------------- microphone

  let recorder = null;

  async function toggleRecording() {
    clearError();
    if (recorder) {
      recorder.stop();
      return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError(
        "No microphone access in this page.",
        "Browsers only allow the microphone on https:// or http://localhost (127.0.0.1) pages."
      );
      return;
    }
    if (typeof MediaRecorder === "undefined") {
      showError("This browser cannot record audio (no MediaRecorder).");
      return;
    }
    audioContext(); // inside the click
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      showError("Could not open the microphone: " + (err.message || err.name), "Allow microphone access for this page.");
      return;
    }
    const chunks = [];
    const rec = new MediaRecorder(stream);
    rec.addEventListener("dataavailable", (e) => {
      if (e.data && e.data.size) chunks.push(e.data);
    });
    rec.addEventListener("stop", async () => {
      stream.getTracks().forEach((t) => t.stop());
      recorder = null;
      setRecordingUi(false);
      try {
        const blob = new Blob(chunks, { type: rec.mimeType || "audio/webm" });
        await attachRecording(await blob.arrayBuffer());
      } catch (err) {
        showError("Could not convert the recording: " + (err.message || err), "Try recording again.");
      }
    });
    recorder = rec;
    rec.start();
    setRecordingUi(true);
  }

  function setRecordingUi(on) {
    const b = $("record");
    b.classList.toggle("recording", on);
    b.setAttribute("aria-pressed", on ? "true" : "false");
    b.textContent = on ? "\u25A0 Stop" : "\u25CF Record";
    setStatus(on ? "Recording\u2026 press Stop when done." : "Ready.");
  }

  // Decodes what MediaRecorder produced, mixes it to mono at RECORD_RATE and attaches it as a WAV part.
  async function attachRecording(encoded) {
    const decoded = await audioContext().decodeAudioData(encoded);
    const frames = Math.max(1, Math.ceil(decoded.duration * RECORD_RATE));
    const offline = new OfflineAudioContext(1, frames, RECORD_RATE);
    const src = offline.createBufferSource();
    src.buffer = decoded;
    src.connect(offline.destination);
    src.start();
    const rendered = await offline.startRendering();
    const pcm = float32ToInt16(rendered.getChannelData(0));
    const wav = wavBytes(pcm, RECORD_RATE);
    // A user turn takes one audio clip: a new recording replaces the previous one.
    const old = attachments.findIndex((a) => a.kind === "audio");
    if (old >= 0) attachments.splice(old, 1);
    attachments.push({
      kind: "audio",
      b64: bytesToBase64(wav),
      seconds: pcm.length / RECORD_RATE,
      blobUrl: URL.createObjectURL(new Blob([wav], { type: "audio/wav" })),
    });
    demo.recordings++;
    demo.lastRecordingBytes = wav.length;
    renderAttachments();
    setStatus(`Recorded ${(pcm.length / RECORD_RATE).toFixed(1)} s; it goes with your next message.`);
  }

  function attachImageFile(file) {
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => {
      attachments.push({ kind: "image", url: String(reader.result) });
      renderAttachments();
    };
    reader.onerror = () => showError("Could not read the image file.");
    reader.readAsDataURL(file);
  }

  // ---------------------------------------------------------------- text to speech

  const sendTts = track(async (controller) => {
    clearError();
    const text = $("tts-input").value.trim();
    if (!text) {
      showError("Nothing to speak.", "Type some text into the Speak box.");
      return;
    }
    audioContext(); // inside the click
    const out = $("tts-out");
    out.replaceChildren();
    const info = note(out, "Speaking\u2026", "dim");
    const player = new SpeechPlayer();
    $("tts-send").disabled = true;
    setStatus("Speak: waiting for audio\u2026");
    try {
      const resp = await post(
        "/v1/audio/speech",
        withSeed({ model: MODEL, input: text, response_format: "pcm", stream: true }),
        controller
      );
      for await (const ev of sseEvents(resp)) {
        if (ev.type === "speech.audio.delta") {
          player.push(ev.audio, ev.sample_rate);
          info.textContent = player.summary();
        } else if (ev.type === "speech.audio.done") {
          break;
        }
      }
      info.textContent = player.summary();
      const replay = player.replayElement();
      if (replay) out.append(replay);
      setStatus("Speak: done, " + player.summary() + ".");
    } catch (err) {
      info.textContent = player.seconds ? player.summary() + " (interrupted)" : "(failed)";
      reportFailure("Speak", err);
    } finally {
      $("tts-send").disabled = false;
    }
  });

  // ---------------------------------------------------------------- text to image

  const sendT2i = track(async (controller) => {
    clearError();
    const prompt = $("t2i-input").value.trim();
    if (!prompt) {
      showError("No image prompt.", 'Describe a picture, e.g. "a big red circle on the left".');
      return;
    }
    const out = $("t2i-out");
    const pending = note(out, "Drawing\u2026", "dim");
    $("t2i-send").disabled = true;
    setStatus("Image: drawing\u2026");
    const t0 = performance.now();
    try {
      const resp = await post(
        "/v1/images/generations",
        withSeed({ model: MODEL, prompt, n: 1, response_format: "b64_json" }),
        controller
      );
      const body = await resp.json();
      const items = (body && body.data) || [];
      if (!items.length) throw new ApiError("The server returned no image.");
      const fig = document.createElement("figure");
      for (const item of items) {
        const url = imageUrlOf(item);
        if (url) fig.append(imageElement(url, prompt));
      }
      const cap = document.createElement("figcaption");
      cap.textContent = prompt;
      fig.append(cap);
      out.prepend(fig);
      setStatus(`Image: done in ${((performance.now() - t0) / 1000).toFixed(1)} s.`);
    } catch (err) {
      reportFailure("Image", err);
    } finally {
      pending.remove();
      $("t2i-send").disabled = false;
    }
  });

  // ---------------------------------------------------------------- wiring

  function init() {
    $("chat-form").addEventListener("submit", (e) => {
      e.preventDefault();
      if (!chatBusy) sendChat();
    });
    $("chat-input").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        if (!chatBusy) sendChat();
      }
    });
    $("record").addEventListener("click", () => {
      toggleRecording();
    });
    $("image-file").addEventListener("change", (e) => {
      attachImageFile(e.target.files && e.target.files[0]);
      e.target.value = "";
    });
    $("chat-clear").addEventListener("click", clearChat);
    $("tts-form").addEventListener("submit", (e) => {
      e.preventDefault();
      sendTts();
    });
    $("t2i-form").addEventListener("submit", (e) => {
      e.preventDefault();
      sendT2i();
    });
    $("stop").addEventListener("click", stopAll);
    $("error-close").addEventListener("click", clearError);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
