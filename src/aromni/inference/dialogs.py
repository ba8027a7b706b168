"""Batch dialog runner with the official ``inference_chat.py`` input schema and output layout.

Input (JSON or JSONL): one dialog ``{"dialog_id": ..., "turns": [...]}``, a list of dialogs, or a list of turns
(one dialog ``dialog_0000``). Turn fields: ``text`` (typed text, fed as text), ``wav_path`` (or ``audio_path``),
``image_paths``, ``user_append_text`` (official default when absent), ``reset`` and ``dialog_id`` (a change of id
starts a fresh history). The official runner's speech-synthesis fields (``speaker_wav``, ``prompt_text``,
``silence_*``) are accepted and ignored; each turn's ``meta.json`` notes which. Relative paths resolve against
``base_dir`` (default: the input file's folder).

Output, as the official runner writes it::

    OUT/<dialog_id>/turn_<index:04d>_<uid>/decoded_text.txt
                                          /meta.json
                                          /<uid>_seg<k>_img<j>_<uid2>.png
                                          /<uid>_seg<k>_audio_<uid2>.wav   (peak-normalised 16-bit PCM)
    OUT/batch_log.json                    (every turn's meta, rewritten after each turn)

Each turn directory is built aside and renamed into place when complete, and ``batch_log.json`` is rewritten
atomically after every turn, so an interrupted or failing run keeps every finished turn. A failing turn
(unreadable file, too long for the context, ...) records its error in its ``meta.json`` and the log, and the
runner goes on with the next turn.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aromni.errors import AromniError, InputError
from aromni.inference import media
from aromni.inference.chat import ChatReply, ChatSession
from aromni.utils.io import atomic_dir, atomic_write_json, atomic_write_text
from aromni.vocab.conversation import ImageSegment, SpeechSegment
from aromni.vocab.templates import OFFICIAL_CHAT_APPEND

TURN_FIELDS = {"text", "wav_path", "audio_path", "image_paths", "user_append_text", "reset", "dialog_id"}
#: Fields of the official schema that drive its external TTS; accepted and ignored here.
IGNORED_OFFICIAL_FIELDS = {"speaker_wav", "prompt_text", "silence_head_sec", "silence_tail_sec",
                           "silence_head_tokens", "silence_tail_tokens"}


def read_dialog_file(path: str | Path) -> Any:
    """JSON, or JSONL (one object per line) when the file is not a single JSON document."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such dialog file", "check the path")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the dialog file ({e})") from None
    if not text:
        raise InputError(f"{path}: the dialog file is empty")
    if text[0] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass  # maybe JSONL whose first line is an object
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not valid JSON or JSONL ({e.msg})", "one JSON object per line") from None
    return items


def normalize_dialogs(data: Any, source: str = "input") -> list[dict[str, Any]]:
    """The official accepted shapes -> ``[{"dialog_id": str, "turns": [dict, ...]}]``; wrong types fail clearly."""
    if isinstance(data, dict):
        if "turns" not in data:
            raise InputError(f"{source}: a JSON object must have a 'turns' list", 'e.g. {"dialog_id": "d1", "turns": [...]}')
        data = [data]
    if not isinstance(data, list) or not data:
        raise InputError(f"{source}: expected a dialog object, a list of dialogs or a list of turns, got "
                         f"{type(data).__name__}")
    if all(isinstance(d, dict) and "turns" in d for d in data):
        dialogs = []
        for i, d in enumerate(data):
            if not isinstance(d["turns"], list):
                raise InputError(f"{source}: dialog {i} has 'turns' of type {type(d['turns']).__name__}, not a list")
            dialogs.append({"dialog_id": str(d.get("dialog_id", f"dialog_{i:04d}")), "turns": list(d["turns"])})
        return dialogs
    if any(isinstance(d, dict) and "turns" in d for d in data):
        raise InputError(f"{source}: mixes dialogs (with 'turns') and bare turns", "use one shape per file")
    for i, d in enumerate(data):
        if not isinstance(d, dict):
            raise InputError(f"{source}: item {i} is {type(d).__name__}, not a JSON object (a dialog or a turn)")
    return [{"dialog_id": "dialog_0000", "turns": list(data)}]


def check_turn(t: Any, where: str) -> tuple[dict[str, Any], list[str]]:
    """Validate one turn's field types; return it and the notes about ignored fields."""
    if not isinstance(t, dict):
        raise InputError(f"{where}: a turn must be a JSON object, got {type(t).__name__}")
    for key in ("text", "wav_path", "audio_path", "user_append_text", "dialog_id"):
        if t.get(key) is not None and not isinstance(t[key], str):
            raise InputError(f"{where}: '{key}' must be a string, got {type(t[key]).__name__}")
    paths = t.get("image_paths")
    if paths is not None and not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
        raise InputError(f"{where}: 'image_paths' must be a list of strings")
    if "reset" in t and not isinstance(t["reset"], bool):
        raise InputError(f"{where}: 'reset' must be true or false")
    if not t.get("text") and not (t.get("wav_path") or t.get("audio_path")):
        raise InputError(f"{where}: a turn needs 'text' or 'wav_path'")
    notes = [f"ignored official field '{k}' (no external TTS here; typed text goes in as text)"
             for k in sorted(set(t) & IGNORED_OFFICIAL_FIELDS)]
    notes += [f"ignored unknown field '{k}'" for k in sorted(set(t) - TURN_FIELDS - IGNORED_OFFICIAL_FIELDS)]
    return t, notes


class DialogRunner:
    """Run dialogs through one :class:`ChatSession` and write the official output layout.

    Args:
        model: an :class:`~aromni.inference.omni.OmniModel`.
        output_dir: where dialogs are written.
        base_dir: folder against which relative input paths resolve.
        options: decoding options for the chat (default: the model's chat options).
        save_tokens: also write ``output_tokens.json`` per turn.
    """

    def __init__(self, model: Any, output_dir: str | Path, *, base_dir: str | Path | None = None,
                 options: Any = None, save_tokens: bool = False):
        self.model, self.output_dir = model, Path(output_dir)
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.session = ChatSession(model, options)
        self.save_tokens = save_tokens
        self.log: list[dict[str, Any]] = []

    def _resolve(self, p: str | None) -> str | None:
        if not p:
            return None
        path = Path(p)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return str(path)

    def run(self, dialogs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run every dialog; return the log (one meta dict per turn)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for d in dialogs:
            did = d["dialog_id"]
            self.session.reset()
            current = did
            for i, t in enumerate(d["turns"], 1):
                if isinstance(t, dict) and t.get("dialog_id") and str(t["dialog_id"]) != current:
                    current = str(t["dialog_id"])  # official: a new dialog id starts a fresh history
                    self.session.reset()
                meta = self.run_turn(t, current, where=f"dialog {did!r} turn {i}")
                self.log.append(meta)
                atomic_write_json(self.output_dir / "batch_log.json", self.log)
        atomic_write_json(self.output_dir / "batch_log.json", self.log)
        return self.log

    def run_turn(self, t: Any, dialog_id: str, *, where: str) -> dict[str, Any]:
        """Run one turn; never raises for a bad turn (the error goes into the returned meta)."""
        dialog_dir = self.output_dir / dialog_id
        index = 1 + (sum(1 for p in dialog_dir.iterdir() if p.is_dir() and p.name.startswith("turn_"))
                     if dialog_dir.is_dir() else 0)
        uid = uuid.uuid4().hex[:8]
        turn_dir = dialog_dir / f"turn_{index:04d}_{uid}"
        meta: dict[str, Any] = {"dialog_id": dialog_id, "turn_index": index, "run_uid": uid}
        try:
            turn, notes = check_turn(t, where)
            meta.update(self._inputs_meta(turn, notes))
            if turn.get("reset"):
                self.session.reset()
            # As the official runner: 'text' is what the user says; 'wav_path' is used only without it.
            text = turn.get("text") or None
            reply = self.session.send(text=text, audio=None if text else meta["wav_path"],
                                      images=meta["image_paths"] or (), append_text=meta["user_append_text"])
            with atomic_dir(turn_dir) as tmp:
                meta.update(self._write_outputs(reply, tmp, turn_dir, uid))
                meta["error"] = None
                atomic_write_json(tmp / "meta.json", meta)
        except (AromniError, OSError, ValueError, RuntimeError) as e:
            meta["error"] = str(e) if isinstance(e, AromniError) else f"{type(e).__name__}: {e}"
            with atomic_dir(turn_dir, overwrite=True) as tmp:
                atomic_write_json(tmp / "meta.json", meta)
        return meta

    def _inputs_meta(self, turn: dict[str, Any], notes: list[str]) -> dict[str, Any]:
        wav = turn.get("wav_path") or turn.get("audio_path")
        images = [self._resolve(p) for p in turn.get("image_paths") or []]
        append = turn.get("user_append_text")
        return {"text": turn.get("text"), "wav_path": self._resolve(wav), "image_paths": images or None,
                "user_append_text": OFFICIAL_CHAT_APPEND if append is None else append, "notes": notes}

    def _write_outputs(self, reply: ChatReply, tmp: Path, final: Path, uid: str) -> dict[str, Any]:
        atomic_write_text(tmp / "decoded_text.txt", reply.text + "\n")
        images, audios = [], []
        sr = self.model.speech.sample_rate if self.model.speech is not None else None
        for k, (seg, value) in enumerate(reply.decoded, 1):
            if value is None:
                continue
            if isinstance(seg, ImageSegment):
                name = f"{uid}_seg{k}_img1_{uuid.uuid4().hex[:8]}.png"
                media.save_png(value, tmp / name)
                images.append(str(final / name))
            elif isinstance(seg, SpeechSegment):
                name = f"{uid}_seg{k}_audio_{uuid.uuid4().hex[:8]}.wav"
                media.save_wav(value, tmp / name, sr, normalize=True)
                audios.append(str(final / name))
        if self.save_tokens:
            atomic_write_json(tmp / "output_tokens.json", reply.tokens)
        return {"decoded_text_file": str(final / "decoded_text.txt"), "saved_images": images,
                "saved_audios": audios, "stop_reason": reply.stop_reason, "generated_tokens": len(reply.tokens),
                "prompt_tokens": reply.prompt_tokens, "dropped_history_turns": reply.dropped_turns}
