"""``aromni omnivivo generate``: a VIVOGen-style tri-modal dataset (caption, image, narration) from an export.

::

    aromni omnivivo generate --model EXPORT --vq VQ --prompts captions.txt --out data/ \\
        [--recognizer toy-judge|none] [--max-wer 0.2] [--seed 0] [--limit N]

Prompts: one caption per line (plain text), or JSON lines ``{"text": ..., "id": ...}`` (``id`` optional; a
``.jsonl`` file, or one whose first line starts with ``{``). Prompt ``i`` (0-based) gets the id ``%06d`` and the
image seed ``--seed + i`` (speech: the pipeline's offset), so a sample does not depend on batching,
``--limit`` or resuming.

Writes into ``--out``::

    images/<id>.png, audio/<id>.wav   each sample's image and narration
    rows.jsonl                        finished samples (one JSON line each, appended and fsynced per batch)
    dataset.parquet                   the table (written at the end): id, text, image_path, audio_path (relative
                                      to --out), duration, sample_rate, transcript, wer, flags {keep, reasons},
                                      seed, stop_reason
    manifest.json                     type, model, settings, counts; "status" running -> complete

Flags are recomputed from the stored measurements whenever the table is written, so a rerun with another
``--max-wer`` re-flags without regenerating. Reasons: ``too_short`` / ``too_long`` (duration outside
``[--min-seconds, --max-seconds]``), ``no_speech`` (no audio, a near-silent waveform, or an empty transcript),
``wer_above_threshold`` (WER of the normalised transcript against the prompt above ``--max-wer``).

Resume: ``--out`` must be missing, empty, or an earlier run of this command with the same model, VQ, seed,
recognizer and sampling settings; finished ids (those in ``rows.jsonl``) are skipped. A torn last line of
``rows.jsonl`` (a crash while appending) is dropped and that sample redone. Anything else in ``--out`` is refused.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from aromni.errors import InputError
from aromni.omnivivo.api import VivoPipeline, VivoResult
from aromni.omnivivo.ras import SpeechSampling
from aromni.omnivivo.recognizers import Recognizer, check_recognizer
from aromni.omnivivo.t2i_generate import T2ISampling
from aromni.tokenizers.image.image_io import save_image
from aromni.tokenizers.speech.audio_io import save_wav
from aromni.utils.extras import optional
from aromni.utils.io import (
    JSONValue,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    loads_json,
    path_kind,
    read_json,
    read_text,
)

DATASET_TYPE = "aromni_vivo_dataset"
MANIFEST, ROWS, TABLE, IMAGES, AUDIO = "manifest.json", "rows.jsonl", "dataset.parquet", "images", "audio"
REASONS = ("too_short", "too_long", "no_speech", "wer_above_threshold")
#: Peak amplitude below which a waveform counts as silence.
SILENCE_PEAK = 1e-3
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_NOT_WORD = re.compile(r"[^\w']+|_")


# ---------------------------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Prompt:
    """One caption: its id, text, 0-based position in the file (its seed offset) and line number."""

    id: str
    text: str
    index: int
    line: int


def read_prompts(path: str | os.PathLike[str]) -> list[Prompt]:
    """The prompts of a text or JSONL file; an empty or bad line raises :class:`InputError` naming ``file:line``."""
    path = Path(path)
    lines = read_text(path, "prompts file").splitlines()
    while lines and not lines[-1].strip():  # trailing blank lines are the end of the file, not prompts
        lines.pop()
    if not lines:
        raise InputError(f"{path}: no prompts", "write one caption per line (or JSON lines with a \"text\" field)")
    jsonl = path.suffix == ".jsonl" or lines[0].lstrip().startswith("{")
    out: list[Prompt] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        where = f"{path}:{n}"
        if not line.strip():
            raise InputError(f"{where}: empty line", "remove it: every line is one prompt")
        text, pid = _json_prompt(line, where) if jsonl else (line.strip(), None)
        pid = pid if pid is not None else f"{len(out):06d}"
        if pid in seen:
            raise InputError(f"{where}: id {pid!r} is also the id of line {seen[pid]}", "give every prompt its own id")
        seen[pid] = n
        out.append(Prompt(pid, text, len(out), n))
    return out


def _json_prompt(line: str, where: str) -> tuple[str, str | None]:
    obj = loads_json(line, where)
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object like {{\"text\": \"a red circle\"}}, got "
                         f"{type(obj).__name__}")
    text, pid = obj.get("text"), obj.get("id")
    if not isinstance(text, str) or not text.strip():
        problem = "has no \"text\"" if "text" not in obj else "\"text\" is not a non-empty string"
        raise InputError(f"{where}: {problem}", "give each line a caption, e.g. {\"text\": \"a red circle\"}")
    if pid is not None and (not isinstance(pid, str) or not _ID.fullmatch(pid)):
        raise InputError(f"{where}: bad id {pid!r}", "ids are 1-100 letters, digits, '.', '_' or '-' (a file name)")
    return text.strip(), pid


# ---------------------------------------------------------------------------------------------- settings
@dataclass
class DatasetSettings:
    """What to generate and how to filter it (the CLI flags)."""

    model: Path
    vq: Path
    prompts: Path
    out: Path
    max_wer: float = 0.2
    min_seconds: float = 0.3
    max_seconds: float = 30.0
    seed: int = 0
    limit: int | None = None
    batch_size: int = 8
    image: T2ISampling = field(default_factory=T2ISampling)
    speech: SpeechSampling = field(default_factory=SpeechSampling)
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("max_wer", "min_seconds", "max_seconds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InputError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.max_seconds <= self.min_seconds:
            raise InputError(f"max_seconds ({self.max_seconds}) must be above min_seconds ({self.min_seconds})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**62:
            raise InputError(f"seed must be an integer in [0, 2^62), got {self.seed!r}")
        for name in ("limit", "batch_size"):
            v = getattr(self, name)
            if (v is not None or name == "batch_size") and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InputError(f"{name} must be an integer >= 1, got {v!r}")

    def identity(self, recognizer: Recognizer | None) -> dict[str, JSONValue]:
        """What a sample depends on: a resumed run must match it."""
        ident = {"model": str(Path(self.model).resolve()), "vq": str(Path(self.vq).resolve()), "seed": self.seed,
                 "recognizer": None if recognizer is None else recognizer.name,
                 "image": _fields(self.image), "speech": _fields(self.speech)}
        return json.loads(json.dumps(ident))  # tuples -> lists, as read back from the manifest

    def filters(self) -> dict[str, JSONValue]:
        return {"max_wer": self.max_wer, "min_seconds": self.min_seconds, "max_seconds": self.max_seconds}


def _fields(settings: T2ISampling | SpeechSampling) -> dict[str, JSONValue]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


# ---------------------------------------------------------------------------------------------- the out dir
def open_out(out: Path, identity: dict[str, JSONValue]) -> dict[str, dict[str, JSONValue]]:
    """Check ``out`` (before any compute) and return the finished rows of an earlier run by id."""
    kind = path_kind(out)
    if kind not in ("dir", "missing"):
        raise InputError(f"{out} exists and is not a directory", "pass a directory for --out")
    if kind == "missing" or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return {}
    manifest = _own_manifest(out)
    if manifest is None:
        raise InputError(f"{out} is not empty and is not a dataset written by `aromni omnivivo generate`",
                         "choose a new or empty --out (or the --out of an earlier run, to resume it)")
    old = manifest.get("identity")
    for key, value in identity.items():
        if not isinstance(old, dict) or old.get(key) != value:
            was = old.get(key) if isinstance(old, dict) else None
            raise InputError(f"{out} was generated with {key} {was!r}, this run has {value!r}",
                             "resume with the same settings, or choose a new --out")
    return read_rows(out / ROWS)


def _own_manifest(out: Path) -> dict[str, JSONValue] | None:
    if path_kind(out / MANIFEST) != "file":
        return None
    try:
        manifest = read_json(out / MANIFEST)
    except InputError:
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("type") == DATASET_TYPE else None


def read_rows(path: Path) -> dict[str, dict[str, JSONValue]]:
    """Finished rows by id; a torn last line (no newline: a crash mid-append) is dropped from the file."""
    if path_kind(path) != "file":
        return {}
    text = read_text(path, "rows file")
    lines = text.split("\n")
    torn = lines.pop()  # "" when the file ends with a newline
    rows: dict[str, dict[str, JSONValue]] = {}
    for n, line in enumerate(lines, 1):
        row = loads_json(line, f"{path}:{n}")
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise InputError(f"{path}:{n}: not a row of this command", "remove the line (its sample is redone)")
        rows[row["id"]] = row
    if torn:
        atomic_write_bytes(path, "".join(f"{line}\n" for line in lines).encode("utf-8"))
    return rows


def append_rows(path: Path, rows: list[dict[str, JSONValue]]) -> None:
    """Append whole lines in one write and fsync, so a crash leaves at most a torn last line."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------- measurements
def normalize(text: str) -> str:
    """Lower-case words (letters, digits, apostrophes), single spaces: what WER compares."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def utterance_wer(reference: str, hypothesis: str) -> float | None:
    """Word error rate of one normalised transcript against its prompt (``None``: no words in the prompt)."""
    jiwer = optional("jiwer", extra="audio", feature="word error rates")
    ref = normalize(reference)
    return float(jiwer.wer(ref, normalize(hypothesis))) if ref else None


def flags(row: dict[str, JSONValue], filters: dict[str, JSONValue]) -> dict[str, JSONValue]:
    """``{"keep": bool, "reasons": [...]}`` of a stored row under ``filters`` (:meth:`DatasetSettings.filters`)."""
    reasons = []
    if row["duration"] < filters["min_seconds"]:
        reasons.append("too_short")
    if row["duration"] > filters["max_seconds"]:
        reasons.append("too_long")
    silent = row["duration"] == 0 or row["peak"] < SILENCE_PEAK
    if silent or (row["transcript"] is not None and not normalize(row["transcript"])):
        reasons.append("no_speech")
    if row["wer"] is not None and row["wer"] > filters["max_wer"]:
        reasons.append("wer_above_threshold")
    return {"keep": not reasons, "reasons": reasons}


def _row(prompt: Prompt, seed: int, result: VivoResult, transcript: str | None) -> dict[str, JSONValue]:
    audio = result.audio.float()
    return {"id": prompt.id, "index": prompt.index, "text": prompt.text,
            "image_path": f"{IMAGES}/{prompt.id}.png", "audio_path": f"{AUDIO}/{prompt.id}.wav",
            "duration": result.seconds, "sample_rate": result.sample_rate, "transcript": transcript,
            "wer": None if transcript is None else utterance_wer(prompt.text, transcript),
            "peak": float(audio.abs().max()) if audio.numel() else 0.0, "seed": seed,
            "stop_reason": result.stop_reason}


# ---------------------------------------------------------------------------------------------- the table
def write_table(path: Path, rows: list[dict[str, JSONValue]], filters: dict[str, JSONValue]) -> None:
    """The Parquet table of ``rows`` (atomically)."""
    pa = optional("pyarrow", extra="data", feature="writing the dataset table")
    pq = optional("pyarrow.parquet", extra="data", feature="writing the dataset table")
    schema = pa.schema([
        ("id", pa.string()), ("text", pa.string()), ("image_path", pa.string()), ("audio_path", pa.string()),
        ("duration", pa.float64()), ("sample_rate", pa.int32()), ("transcript", pa.string()),
        ("wer", pa.float64()),
        ("flags", pa.struct([("keep", pa.bool_()), ("reasons", pa.list_(pa.string()))])),
        ("seed", pa.int64()), ("stop_reason", pa.string())])
    columns = {name: [r[name] for r in rows] for name in schema.names if name != "flags"}
    columns["flags"] = [flags(r, filters) for r in rows]
    table = pa.Table.from_pydict(columns, schema=schema)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def _counts(rows: list[dict[str, JSONValue]], filters: dict[str, JSONValue], n_prompts: int, generated: int
            ) -> dict[str, JSONValue]:
    f = [flags(r, filters) for r in rows]
    return {"prompts": n_prompts, "rows": len(rows), "generated": generated, "resumed": len(rows) - generated,
            "kept": sum(x["keep"] for x in f),
            "flagged": {reason: sum(reason in x["reasons"] for x in f) for reason in REASONS}}


# ---------------------------------------------------------------------------------------------- the builder
def build_dataset(settings: DatasetSettings, *, recognizer: Recognizer | None,
                  pipeline: VivoPipeline | None = None, progress: bool = False) -> dict[str, JSONValue]:
    """Generate (or finish) the dataset of ``settings`` and return its manifest (module docstring).

    ``pipeline``: an already loaded :class:`VivoPipeline` for ``settings.model`` / ``settings.vq`` (loaded from
    them when ``None``). Inputs and ``settings.out`` are checked before any compute (:class:`InputError`)."""
    recognizer = check_recognizer(recognizer)
    prompts = read_prompts(settings.prompts)[: settings.limit]
    out, identity = Path(settings.out), settings.identity(recognizer)
    done = open_out(out, identity)
    for p in prompts:
        if p.id in done and done[p.id].get("text") != p.text:
            raise InputError(f"{settings.prompts}:{p.line}: prompt {p.id} was {done[p.id].get('text')!r} in the "
                             f"earlier run in {out}", "resume with the same prompts file, or choose a new --out")
    manifest: dict[str, JSONValue] = {
        "type": DATASET_TYPE, "status": "running", "identity": identity, "prompts": str(Path(settings.prompts)),
        "settings": {**settings.filters(), "limit": settings.limit, "batch_size": settings.batch_size,
                     "device": str(settings.device)},
        "files": {"table": TABLE, "rows": ROWS, "images": IMAGES, "audio": AUDIO}}
    atomic_write_json(out / MANIFEST, manifest)  # marks --out as this command's before the first sample
    todo = [p for p in prompts if p.id not in done]
    if todo and pipeline is None:
        pipeline = VivoPipeline.load(settings.model, settings.vq, device=settings.device)
    generated = 0
    for batch in _batches(todo, settings.batch_size, progress):
        rows = _generate_batch(pipeline, batch, settings, recognizer, out)
        append_rows(out / ROWS, rows)
        done.update({r["id"]: r for r in rows})
        generated += len(rows)
    rows = sorted(done.values(), key=lambda r: r["index"])
    write_table(out / TABLE, rows, settings.filters())
    manifest.update(status="complete", counts=_counts(rows, settings.filters(), len(prompts), generated))
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def _batches(todo: list[Prompt], size: int, progress: bool) -> Iterator[list[Prompt]]:
    bar = tqdm(total=len(todo), unit="sample", disable=not progress or not sys.stderr.isatty())
    try:
        for i in range(0, len(todo), size):
            yield todo[i : i + size]
            bar.update(len(todo[i : i + size]))
    finally:
        bar.close()


def _generate_batch(pipe: VivoPipeline, batch: list[Prompt], settings: DatasetSettings,
                    recognizer: Recognizer | None, out: Path) -> list[dict[str, JSONValue]]:
    """Generate, transcribe and write one batch's files; its rows (not yet recorded)."""
    seeds = [settings.seed + p.index for p in batch]
    results = pipe.generate([p.text for p in batch], seed=seeds, image=settings.image, speech=settings.speech)
    transcripts: list[str | None] = [None] * len(batch)
    if recognizer is not None:
        wavs = [r.audio.float().numpy() for r in results]
        transcripts = list(recognizer.transcribe(wavs, pipe.sample_rate))
        if len(transcripts) != len(batch) or not all(isinstance(t, str) for t in transcripts):
            raise InputError(f"recognizer {recognizer.name!r} returned {len(transcripts)} values for {len(batch)} "
                             "waveforms", "transcribe must return one string per waveform")
    rows = []
    for p, seed, result, transcript in zip(batch, seeds, results, transcripts):
        if result.image is None:
            raise InputError("the pipeline has no VQ: it draws image codes, not images", "pass --vq")
        save_image(result.image, out / IMAGES / f"{p.id}.png", overwrite=True)
        save_wav(out / AUDIO / f"{p.id}.wav", result.audio, result.sample_rate)
        rows.append(_row(p, seed, result, transcript))
    return rows
