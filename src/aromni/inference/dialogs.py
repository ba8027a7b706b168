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

A ``dialog_id`` names a folder directly inside the output directory: ids that are empty, start with ``.``, hold a
path separator or control characters, or are too long are refused before anything runs (they could otherwise write
outside it). The runner refuses a non-empty output directory unless ``overwrite=True``, which first removes the
outputs of an earlier run there (``batch_log.json`` and the dialog folders it or this run names; other files stay).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from aromni.errors import AromniError, InputError
from aromni.inference import media
from aromni.inference.chat import ChatModel, ChatReply, ChatSession
from aromni.inference.options import DecodeOptions
from aromni.utils.io import (
    JSONValue,
    JSONNestingError,
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    loads_json,
    read_json,
    read_text,
)
from aromni.vocab.conversation import ImageSegment, SpeechSegment
from aromni.vocab.templates import OFFICIAL_CHAT_APPEND

TURN_FIELDS = {"text", "wav_path", "audio_path", "image_paths", "user_append_text", "reset", "dialog_id"}
#: Fields of the official schema that drive its external TTS; accepted and ignored here.
IGNORED_OFFICIAL_FIELDS = {"speaker_wav", "prompt_text", "silence_head_sec", "silence_tail_sec",
                           "silence_head_tokens", "silence_tail_tokens"}


#: The run log's file name; no dialog may take it.
LOG_NAME = "batch_log.json"
#: Longest dialog id in UTF-8 bytes (file systems allow 255 per name; the runner adds no suffix to it).
MAX_DIALOG_ID_BYTES = 200


def read_dialog_file(path: str | Path) -> JSONValue:
    """JSON, or JSONL (one object per line) when the file is not a single JSON document."""
    path = Path(path)
    text = read_text(path, "dialog file").strip()
    if not text:
        raise InputError(f"{path}: the dialog file is empty")
    if text[0] in "[{":
        try:
            return loads_json(text, str(path))
        except JSONNestingError:
            raise
        except InputError:
            pass  # maybe JSONL whose first line is an object
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                items.append(loads_json(line, f"{path}:{n}"))
            except JSONNestingError:
                raise
            except InputError as e:
                raise InputError(e.problem.replace("not valid JSON", "not valid JSON or JSONL", 1),
                                 "one JSON object per line") from None
    return items


def check_dialog_id(did: object, where: str) -> str:
    """``did`` if it is a safe folder name directly inside the output directory, else an :class:`InputError`."""
    if not isinstance(did, str):
        raise InputError(f"{where}: 'dialog_id' must be a string, got {type(did).__name__}")
    shown = repr(did) if len(did) <= 60 else repr(did[:57]) + "..."
    problem = None
    if not did.strip():
        problem = "is empty"
    elif did.startswith("."):
        problem = "starts with '.'"
    elif "/" in did or "\\" in did:
        problem = "contains a path separator"
    elif any(ord(c) < 32 or ord(c) == 127 for c in did):
        problem = "contains control characters"
    elif did == LOG_NAME:
        problem = "is the name of the run log"
    else:
        try:
            size = len(did.encode("utf-8"))
        except UnicodeEncodeError:
            problem = "is not valid Unicode (a lone surrogate)"
        else:
            if size > MAX_DIALOG_ID_BYTES:
                problem = f"is too long ({size} bytes; at most {MAX_DIALOG_ID_BYTES})"
    if problem:
        raise InputError(f"{where}: dialog_id {shown} {problem}",
                         "a dialog_id names a folder inside --output-dir: use letters, digits, '-', '_' and '.'")
    return did


def _dialog_id_of(d: dict[str, JSONValue], i: int, source: str) -> str:
    did = d.get("dialog_id")
    if did is None:
        return f"dialog_{i:04d}"
    if isinstance(did, int) and not isinstance(did, bool):
        did = str(did)
    return check_dialog_id(did, f"{source}: dialog {i}")


def _check_turn_ids(dialog: dict[str, JSONValue], where: str) -> None:
    # A turn's own dialog_id starts a new dialog folder: refuse an unsafe one before anything runs. (A non-string
    # one fails its turn in check_turn.)
    for j, t in enumerate(dialog["turns"], 1):
        if isinstance(t, dict) and isinstance(t.get("dialog_id"), str) and t["dialog_id"]:
            check_dialog_id(t["dialog_id"], f"{where} turn {j}")


def normalize_dialogs(data: JSONValue, source: str = "input") -> list[dict[str, JSONValue]]:
    """The official accepted shapes -> ``[{"dialog_id": str, "turns": [dict, ...]}]``; wrong types and unsafe
    dialog ids fail clearly."""
    if isinstance(data, dict):
        if "turns" not in data:
            raise InputError(f"{source}: a JSON object must have a 'turns' list", 'e.g. {"dialog_id": "d1", "turns": [...]}')
        data = [data]
    if not isinstance(data, list) or not data:
        raise InputError(f"{source}: expected a dialog object, a list of dialogs or a list of turns, got "
                         f"{type(data).__name__}" + (" (empty)" if isinstance(data, list) else ""))
    if all(isinstance(d, dict) and "turns" in d for d in data):
        dialogs = []
        for i, d in enumerate(data):
            if not isinstance(d["turns"], list):
                raise InputError(f"{source}: dialog {i} has 'turns' of type {type(d['turns']).__name__}, not a list")
            dialogs.append({"dialog_id": _dialog_id_of(d, i, source), "turns": list(d["turns"])})
    elif any(isinstance(d, dict) and "turns" in d for d in data):
        raise InputError(f"{source}: mixes dialogs (with 'turns') and bare turns", "use one shape per file")
    else:
        for i, d in enumerate(data):
            if not isinstance(d, dict):
                raise InputError(f"{source}: item {i} is {type(d).__name__}, not a JSON object (a dialog or a turn)")
        dialogs = [{"dialog_id": "dialog_0000", "turns": list(data)}]
    for d in dialogs:
        _check_turn_ids(d, f"{source}: dialog {d['dialog_id']!r}")
    return dialogs


def check_output_dir(output_dir: str | Path, overwrite: bool = False) -> Path:
    """Refuse an output directory that is a file, or that is not empty without ``overwrite`` (changes nothing)."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory", "choose a new or empty --output-dir")
    if out.is_dir() and not overwrite:
        try:
            busy = any(out.iterdir())
        except OSError as e:
            raise InputError(f"{out}: cannot list the output directory ({e.strerror or e})") from None
        if busy:
            raise InputError(f"{out} already exists and is not empty",
                             "choose another --output-dir, or pass --overwrite to replace the outputs of a run there")
    return out


def _previous_dialog_ids(out: Path) -> set[str]:
    try:
        log = read_json(out / LOG_NAME)
    except InputError:
        return set()
    if not isinstance(log, list):
        return set()
    return {m["dialog_id"] for m in log if isinstance(m, dict) and isinstance(m.get("dialog_id"), str)}


def remove_previous_outputs(out: Path, dialogs: Sequence[dict[str, JSONValue]] = ()) -> None:
    """Delete what a dialog run writes in ``out``: ``batch_log.json`` and the dialog folders named by it or by
    ``dialogs`` (never anything else, and never outside ``out``)."""
    names = _previous_dialog_ids(out)
    for d in dialogs:
        names.add(d["dialog_id"])
        names.update(t["dialog_id"] for t in d["turns"]
                     if isinstance(t, dict) and isinstance(t.get("dialog_id"), str))
    for name in names:
        try:
            check_dialog_id(name, "")
        except InputError:
            continue
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
    (out / LOG_NAME).unlink(missing_ok=True)


def check_turn(t: object, where: str) -> tuple[dict[str, JSONValue], list[str]]:
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
        overwrite: run into a non-empty ``output_dir``, replacing the outputs of an earlier run there (see
            :func:`remove_previous_outputs`); without it a non-empty directory is refused.
    """

    def __init__(self, model: ChatModel, output_dir: str | Path, *, base_dir: str | Path | None = None,
                 options: DecodeOptions | None = None, save_tokens: bool = False, overwrite: bool = False):
        self.model, self.output_dir = model, Path(output_dir)
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.session = ChatSession(model, options)
        self.save_tokens = save_tokens
        self.overwrite = overwrite
        self.log: list[dict[str, JSONValue]] = []
        self._prepared = False

    def _resolve(self, p: str | None) -> str | None:
        if not p:
            return None
        path = Path(p)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return str(path)

    def run(self, dialogs: Sequence[dict[str, JSONValue]]) -> list[dict[str, JSONValue]]:
        """Run every dialog; return the log (one meta dict per turn). The first call checks (and with
        ``overwrite`` clears) the output directory; later calls add to this runner's outputs."""
        if not self._prepared:
            self._prepare(dialogs)
        for d in dialogs:
            did = d["dialog_id"]
            self.session.reset()
            current = did
            for i, t in enumerate(d["turns"], 1):
                if isinstance(t, dict) and isinstance(t.get("dialog_id"), str) and t["dialog_id"] \
                        and t["dialog_id"] != current:
                    current = t["dialog_id"]  # official: a new dialog id starts a fresh history
                    self.session.reset()
                meta = self.run_turn(t, current, where=f"dialog {did!r} turn {i}")
                self.log.append(meta)
                atomic_write_json(self.output_dir / LOG_NAME, self.log)
        atomic_write_json(self.output_dir / LOG_NAME, self.log)
        return self.log

    def _prepare(self, dialogs: Sequence[dict[str, JSONValue]]) -> None:
        out = check_output_dir(self.output_dir, self.overwrite)
        if out.is_dir() and self.overwrite:
            remove_previous_outputs(out, dialogs)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{out}: cannot create the output directory ({e.strerror or e})") from None
        self._prepared = True

    def _dialog_dir(self, dialog_id: str, where: str) -> Path:
        # normalize_dialogs already refused unsafe ids; check again for callers that skipped it, and make sure the
        # folder resolves directly inside the output directory.
        check_dialog_id(dialog_id, where)
        path = self.output_dir / dialog_id
        if path.resolve().parent != self.output_dir.resolve():
            raise InputError(f"{where}: dialog_id {dialog_id!r} does not name a folder inside {self.output_dir}")
        return path

    def run_turn(self, t: object, dialog_id: str, *, where: str) -> dict[str, JSONValue]:
        """Run one turn; never raises for a bad turn (the error goes into the returned meta)."""
        uid = uuid.uuid4().hex[:8]
        meta: dict[str, JSONValue] = {"dialog_id": dialog_id, "turn_index": None, "run_uid": uid}
        try:
            dialog_dir = self._dialog_dir(dialog_id, where)
            index = 1 + (sum(1 for p in dialog_dir.iterdir() if p.is_dir() and p.name.startswith("turn_"))
                         if dialog_dir.is_dir() else 0)
        except (InputError, OSError) as e:
            meta["error"] = describe_error(e)  # no folder to write its meta.json into: the error is in the log only
            return meta
        meta["turn_index"] = index
        turn_dir = dialog_dir / f"turn_{index:04d}_{uid}"
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
            meta["error"] = describe_error(e)
            try:
                with atomic_dir(turn_dir, overwrite=True) as tmp:
                    atomic_write_json(tmp / "meta.json", meta)
            except OSError as e2:
                meta["error"] += f" (and its meta.json could not be written: {describe_error(e2)})"
        return meta

    def _inputs_meta(self, turn: dict[str, JSONValue], notes: list[str]) -> dict[str, JSONValue]:
        wav = turn.get("wav_path") or turn.get("audio_path")
        images = [self._resolve(p) for p in turn.get("image_paths") or []]
        append = turn.get("user_append_text")
        return {"text": turn.get("text"), "wav_path": self._resolve(wav), "image_paths": images or None,
                "user_append_text": OFFICIAL_CHAT_APPEND if append is None else append, "notes": notes}

    def _write_outputs(self, reply: ChatReply, tmp: Path, final: Path, uid: str) -> dict[str, JSONValue]:
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


def describe_error(e: BaseException, *, os_type: bool = True) -> str:
    """One line about a failed input: an AromniError's own message, an OSError's reason and file (after its type
    name with ``os_type``), else ``Type: message``."""
    if isinstance(e, AromniError):
        return str(e)
    if isinstance(e, OSError) and e.strerror:
        return (f"{type(e).__name__}: " if os_type else "") + e.strerror + (f": {e.filename}" if e.filename else "")
    return f"{type(e).__name__}: {e}"
