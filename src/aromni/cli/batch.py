"""Batch inputs for the task commands (``asr``, ``caption``, ``tts``, ``t2i``).

Inputs come as several files, folders (searched recursively for the modality's file types) or globs
(``--audio a.wav dir/ 'dir/*.wav'``), several ``--text`` values, or ``--input requests.jsonl`` with one JSON
object per line holding the same fields as the flags (``{"audio": ...}``, ``{"image": ...}``,
``{"text": ..., "out": ...}``, plus an optional ``"id"`` echoed in the results). Relative input paths in a
requests file resolve against the file's folder; relative ``"out"`` paths against ``--out-dir`` (default: that
folder too).

They run ``--batch-size`` at a time through one batched model call; when a batch fails (a missing file, a
reply without speech) its inputs are retried one by one, so one bad input gets an ``"error"`` field instead of
stopping the others. Results are JSON lines, one per input in input order: to ``--output FILE`` (written
atomically), or to stdout with ``--json``; otherwise one human-readable line per input. Media outputs (TTS
``.wav``, T2I ``.png``) are written beside their destinations under temporary names and renamed into place only
when the whole batch has run, so an interrupted run leaves no partial set; existing files are refused before any
compute unless ``--overwrite``. A run with failed inputs ends with one ``error:`` line and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from tqdm import tqdm

from aromni.cli import common
from aromni.errors import AromniError, InputError
from aromni.inference.dialogs import describe_error
from aromni.inference.omni import OmniModel, TextOutput
from aromni.inference.options import DecodeOptions
from aromni.utils.io import JSONValue, atomic_write_text, read_jsonl
from aromni.vocab.tasks import Task

#: One output of a batched call (a TextOutput, a SpeechOutput, an ImageOutput, ...).
R = TypeVar("R")
M = TypeVar("M")

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".caf")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: Errors that fail one input (and are retried one by one when they fail a batch); anything else stops the run.
INPUT_ERRORS = (AromniError, OSError, ValueError, RuntimeError)


@dataclass
class Request:
    """One input: ``value`` is a path (asr, caption) or a text (tts, t2i); ``out`` the media file to write."""

    index: int
    value: str
    out: Path | None = None
    extra: dict[str, JSONValue] = field(default_factory=dict)  # {"id": ...} from a requests file


# ------------------------------------------------------------------------------------------------ flags
def add_batch_args(p: argparse.ArgumentParser, *, media_out: str | None = None) -> None:
    """``--input``, ``--batch-size``, ``--output`` (and ``--out-dir`` for commands that write ``media_out``)."""
    g = p.add_argument_group("batch")
    g.add_argument("--batch-size", type=common.positive_int, default=8,
                   help="inputs per batched generation (default: 8)")
    g.add_argument("--output", default=None, metavar="RESULTS.jsonl",
                   help="write one JSON line per input here (default: stdout)")
    if media_out:
        g.add_argument("--out-dir", default=None, metavar="DIR",
                       help=f"folder for the {media_out} files of several inputs (named 0000{media_out}, "
                            f"0001{media_out}, ... by input index, unless a request gives 'out')")


def add_input_arg(g: argparse._ActionsContainer, field_name: str, example: str) -> None:
    g.add_argument("--input", default=None, metavar="REQUESTS.jsonl",
                   help=f"one JSON object per line, e.g. {example}; relative paths resolve against the file's "
                        "folder")


# ------------------------------------------------------------------------------------------------ inputs
def expand_paths(specs: Sequence[str], suffixes: tuple[str, ...], what: str) -> tuple[list[str], bool]:
    """Files named by ``specs`` (files, folders searched recursively for ``suffixes``, globs) in order, and
    whether this is a batch (several specs, or any folder or glob)."""
    out: list[str] = []
    batch = len(specs) > 1
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            batch = True
            files = sorted(f for f in path.rglob("*") if f.suffix.lower() in suffixes and f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(path).parts))
            if not files:
                raise InputError(f"{spec}: no {what} files ({', '.join(suffixes)}) in this folder")
            out += [str(f) for f in files]
        elif not path.exists() and any(c in spec for c in "*?["):
            batch = True
            files = sorted(f for f in glob.glob(spec, recursive=True) if os.path.isfile(f))
            if not files:
                raise InputError(f"{spec}: the pattern matches no files", "check the pattern (quote it in the shell)")
            out += files
        else:
            out.append(spec)  # a missing file becomes that input's error
    return out, batch


def read_requests(path: str, field_name: str, *, with_out: bool = False) -> list[Request]:
    """The requests of a JSONL file: each line an object with ``field_name`` (a string), an optional ``"id"``
    and, with ``with_out``, an optional ``"out"``. Any other field is refused (it would be silently ignored)."""
    allowed = {field_name, "id", *(("out",) if with_out else ())}
    base = Path(path).resolve().parent
    requests = []
    for n, obj in read_jsonl(path, "requests file"):
        where = f"{path}:{n}"
        if not isinstance(obj, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}",
                             f'one object per line, e.g. {{"{field_name}": ...}}')
        unknown = sorted(set(obj) - allowed)
        if unknown:
            raise InputError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}",
                             f"a request has {', '.join(sorted(allowed))}")
        value = obj.get(field_name)
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{where}: '{field_name}' must be a non-empty string")
        if field_name != "text" and not Path(value).is_absolute():
            value = str(base / value)
        out = obj.get("out")
        if out is not None and (not isinstance(out, str) or not out.strip()):
            raise InputError(f"{where}: 'out' must be a non-empty string (a file name)")
        extra = {"id": obj["id"]} if "id" in obj else {}
        requests.append(Request(len(requests), value, Path(out) if out else None, extra))
    if not requests:
        raise InputError(f"{path}: no requests in the file",
                         f'one JSON object per line, e.g. {{"{field_name}": ...}}')
    return requests


def plan_outputs(requests: list[Request], out_dir: str | None, suffixes: tuple[str, ...], *, overwrite: bool,
                 base: Path | None = None) -> None:
    """Give every request its media output path and refuse, before any compute, a wrong extension, two requests
    writing one file, a directory in the way, or an existing file without ``overwrite``."""
    root = Path(out_dir) if out_dir else base
    seen: dict[Path, int] = {}
    for r in requests:
        if r.out is None:
            if out_dir is None:
                raise InputError(f"request {r.index} has no output file",
                                 "pass --out-dir DIR, or give each request an 'out'")
            r.out = Path(out_dir) / f"{r.index:04d}{suffixes[0]}"
        elif not r.out.is_absolute() and root is not None:
            r.out = root / r.out
        if r.out.suffix.lower() not in suffixes:
            raise InputError(f"{r.out}: expected a {' or '.join(suffixes)} file name (request {r.index})")
        key = Path(os.path.abspath(r.out))
        if key in seen:
            raise InputError(f"requests {seen[key]} and {r.index} both write {r.out}", "give each its own 'out'")
        seen[key] = r.index
        if r.out.is_dir():
            raise InputError(f"{r.out} is a directory (request {r.index})", "pass a file path")
        if r.out.exists() and not overwrite:
            raise InputError(f"{r.out} already exists (request {r.index})", "choose another path or pass --overwrite")
    if out_dir:
        common.make_dir(Path(out_dir))
    for r in requests:
        common.make_dir(r.out.parent)


def take_single_out(requests: list[Request], args: argparse.Namespace) -> None:
    """``--out FILE`` names the output of a single ``--text`` (also when results go to ``--output``)."""
    if args.out is None:
        return
    if args.input is not None or len(requests) != 1:
        raise InputError("--out names the file of a single --text",
                         "use --out-dir DIR for several inputs (or 'out' fields in --input)")
    requests[0].out = Path(args.out)


def planned_text_requests(args: argparse.Namespace, suffixes: tuple[str, ...]) -> list[Request]:
    """The requests of ``aromni t2i`` / ``aromni tts`` (``--input`` lines or one per ``--text``), each with its
    planned media output path (see :func:`take_single_out` and :func:`plan_outputs`)."""
    if args.input is not None:
        requests = read_requests(args.input, "text", with_out=True)
        base = Path(args.input).resolve().parent
    else:
        requests, base = [Request(i, t) for i, t in enumerate(args.text)], None
    take_single_out(requests, args)
    plan_outputs(requests, args.out_dir, suffixes, overwrite=args.overwrite, base=base)
    return requests


def check_results_path(path: str | None, overwrite: bool) -> Path | None:
    if path is None:
        return None
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{out} is a directory", "pass a file such as results.jsonl to --output")
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists", "choose another --output or pass --overwrite")
    common.make_dir(out.parent)
    return out


# ------------------------------------------------------------------------------------------------ running
def run_batches(requests: list[Request], call: Callable[[list[Request]], list[R]], batch_size: int,
                desc: str) -> list[tuple[R | None, str | None]]:
    """``[(output, None) or (None, error)]`` per request, in order. ``call(chunk)`` returns one output per
    request of the chunk; a chunk that raises is retried one request at a time."""
    results: list[tuple[R | None, str | None]] = []
    with tqdm(total=len(requests), desc=desc, unit="input", disable=not sys.stderr.isatty(),
              file=sys.stderr) as bar:
        for start in range(0, len(requests), batch_size):
            chunk = requests[start:start + batch_size]
            try:
                outs = call(chunk)
                results += [(o, None) for o in outs]
            except INPUT_ERRORS as e:
                if len(chunk) == 1:
                    results.append((None, describe_error(e, os_type=False)))
                else:
                    for r in chunk:
                        try:
                            results.append((call([r])[0], None))
                        except INPUT_ERRORS as e1:
                            results.append((None, describe_error(e1, os_type=False)))
            bar.update(len(chunk))
    return results


class StagedFiles:
    """Media files saved under temporary names beside their destinations, renamed into place by
    :meth:`publish`; whatever was not published is removed when the ``with`` block ends."""

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path]] = []

    def path_for(self, dest: Path) -> Path:
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial{dest.suffix}")
        self.staged.append((tmp, dest))
        return tmp

    def publish(self, pairs: Sequence[tuple[Path, Path]]) -> None:
        """Rename each ``(tmp, dest)`` into place (the others are removed on exit)."""
        for tmp, dest in pairs:
            os.replace(tmp, dest)

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for tmp, _ in self.staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self.staged = []


def finish(args: argparse.Namespace, records: list[dict[str, JSONValue]],
           human: Callable[[dict[str, JSONValue]], str],
           results_path: Path | None) -> int:
    """Write or print the result lines; raise the one-line error when some inputs failed."""
    failed = sum(1 for r in records if r.get("error"))
    if results_path is not None:
        atomic_write_text(results_path, "".join(common.dumps_line(r) + "\n" for r in records))
        summary = {"output": str(results_path), "inputs": len(records), "failed": failed}
        common.emit(args, summary, f"wrote {results_path} ({len(records)} input(s), {failed} failed)")
    else:
        for r in records:
            common.safe_print(common.dumps_line(r) if args.json else human(r))
        sys.stdout.flush()
    if failed:
        where = f"see the 'error' fields in {results_path}" if results_path else "see the 'error' fields above"
        raise AromniError(f"{failed} of {len(records)} inputs failed", where)
    return 0


def add_media_to_text_parser(sub: argparse._SubParsersAction, task: Task, field_name: str, help: str,
                             media_help: str, example: str) -> argparse.ArgumentParser:
    """The parser of ``aromni asr`` / ``aromni caption``: ``--FIELD`` files or ``--input`` requests, an optional
    instruction, and the task and batch flags (the caller sets ``func``)."""
    p = sub.add_parser(task.name, help=help)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(f"--{field_name}", nargs="+", metavar=field_name.upper(), help=media_help)
    add_input_arg(src, field_name, example)
    p.add_argument("--instruction", default=None, help="override the task instruction")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    common.add_task_args(p, images=False)
    add_batch_args(p)
    return p


def add_text_to_media_parser(sub: argparse._SubParsersAction, task: Task, help: str, text_help: str, example: str,
                             out_help: str) -> argparse.ArgumentParser:
    """The parser of ``aromni t2i`` / ``aromni tts`` with its inputs (``--text`` values or ``--input`` requests)
    and the ``--out`` file of a single ``--text``; the caller adds the other flags."""
    p = sub.add_parser(task.name, help=help)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", nargs="+", metavar="TEXT", type=common.text_arg, help=text_help)
    add_input_arg(src, "text", example)
    p.add_argument("--out", default=None, help=out_help)
    return p


#: ``call(model, options, inputs)``: one TextOutput per input (a path, or a list of paths).
MediaToText = Callable[[OmniModel, DecodeOptions, str | list[str]], TextOutput | list[TextOutput]]


def media_to_text(args: argparse.Namespace, field_name: str, suffixes: Sequence[str], task: Task,
                  call: MediaToText) -> int:
    """``aromni asr`` / ``aromni caption``: one file (the single-input output, unchanged), or a batch from several
    files, folders, globs or ``--input requests.jsonl`` (JSONL results)."""
    if args.input is not None:
        requests = read_requests(args.input, field_name)
    else:
        paths, is_batch = expand_paths(getattr(args, field_name), suffixes, field_name)
        if not is_batch and args.output is None:
            model = common.load_model(args)
            out = call(model, common.decode_options(args, task, model), paths[0])
            common.emit(args, {field_name: paths[0], "text": out.text, "stop_reason": out.stop_reason,
                               "seconds": round(out.seconds, 3)}, out.text)
            return 0
        requests = [Request(i, p) for i, p in enumerate(paths)]
    return text_task(args, requests, field_name, task, call)  # type: ignore[arg-type]


def text_task(args: argparse.Namespace, requests: list[Request], field_name: str, task: Task,
              call: Callable[[OmniModel, DecodeOptions, list[str]], list[TextOutput]]) -> int:
    """ASR / caption over ``requests``: ``call(model, options, values)`` returns one TextOutput per value (the
    options are built once from the flags)."""
    results_path = check_results_path(args.output, getattr(args, "overwrite", False))
    model = common.load_model(args)
    options = common.decode_options(args, task, model)

    def run(chunk: list[Request]) -> list[tuple[TextOutput, float]]:
        t0 = time.perf_counter()
        outs = call(model, options, [r.value for r in chunk])
        return [(o, time.perf_counter() - t0) for o in outs]

    records = []
    for r, (res, err) in zip(requests, run_batches(requests, run, args.batch_size, task.name)):
        rec: dict[str, JSONValue] = {"index": r.index, **r.extra, field_name: r.value}
        if err is None:
            out, seconds = res
            rec.update(text=out.text, stop_reason=out.stop_reason, seconds=round(seconds, 3))
        else:
            rec["error"] = err
        records.append(rec)
    return finish(args, records, lambda rec: f"{rec[field_name]}\t" + (
        rec["text"] if "error" not in rec else f"error: {rec['error']}"), results_path)


def media_task(args: argparse.Namespace, requests: list[Request], task: Task,
               call: Callable[[OmniModel, DecodeOptions, list[str]], list[M]],
               save: Callable[[OmniModel, M, Path], dict[str, JSONValue]]) -> int:
    """TTS / T2I over ``requests`` (outputs already planned): ``call(model, options, texts)`` returns one output
    per text (the options are built once from the flags); ``save(model, output, tmp_path)`` writes it and returns
    the record fields."""
    results_path = check_results_path(args.output, args.overwrite)
    model = common.load_model(args)
    options = common.decode_options(args, task, model)
    with StagedFiles() as staged:

        def run(chunk: list[Request]) -> list[tuple[dict[str, JSONValue], Path]]:
            outs = call(model, options, [r.value for r in chunk])
            done = []
            for r, o in zip(chunk, outs):
                tmp = staged.path_for(r.out)
                done.append((save(model, o, tmp), tmp))
            return done

        records, ready = [], []
        for r, (res, err) in zip(requests, run_batches(requests, run, args.batch_size, task.name)):
            rec: dict[str, JSONValue] = {"index": r.index, **r.extra, "text": r.value}
            if err is None:
                rec.update(out=str(r.out), **res[0])
                ready.append((res[1], r.out))
            else:
                rec.update(out=None, error=err)
            records.append(rec)
        staged.publish(ready)
    return finish(args, records, lambda rec: f"wrote {rec['out']}" if "error" not in rec
                  else f"error: request {rec['index']}: {rec['error']}", results_path)
