"""``aromni data build``: raw pairs, text, dialogs or official token files -> parquet token shards.

Pipeline (see ``docs/data.md`` for the config format)::

    config.yaml --plan--> chunks (a few hundred records each, deterministic)
                --workers--> OUT/.build/chunks/<id>/{<split>/shard-00000.parquet, summary.json}
                             (atomic, resumable)
                --finalize--> OUT/<split>/shard-NNNNN.parquet (chunk order, rows_per_shard rows each)
                              OUT/manifest.json   (written last: layout, counts, tokens, tokenizers, report)

Chunks are encoded by a pool of worker processes (each loads the tokenizers once and runs torch with one
thread) or in-process with ``workers: 1``; the output does not depend on the number of workers. A build that
stops (crash, Ctrl-C, a killed worker) keeps its finished chunks: the same command resumes it, provided the
config, tokenizers and input files are unchanged (checked with a fingerprint). Bad records are skipped and
counted per reason in the manifest's ``report``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aromni.errors import AromniError, ConfigError, InputError
from aromni.training.data.shards import MANIFEST, write_manifest
from aromni.training.data.sources import make_source
from aromni.training.data.sources.base import Source
from aromni.training.data.sources.toolkit import Toolkit, identities, load_toolkit
from aromni.training.data.sources.worker import (
    MAX_EXAMPLES,
    SUMMARY,
    Worker,
    init_process,
    run_in_process,
    set_inherited,
)
from aromni.utils.config import dataclass_from_dict, describe, read_yaml
from aromni.utils.io import JSONValue, atomic_path, atomic_write_json, read_json

BUILDER_VERSION = 1
STAGE = ".build"


@dataclass
class BuildConfig:
    """A data build. Relative paths start at ``root`` (default: the config file's directory).

    Attributes:
        sources: list of source mappings (``type``, ``paths``, ``split``, ...; see
            ``aromni.training.data.sources``).
        out: output directory (the CLI's ``--out`` overrides it).
        bundle: bundle directory whose layout, tokenizers and prompt style to use (weights are not loaded);
            ``toy`` (when no such directory exists) is the toy-world bundle shipped with the package.
        tokenizers: ``{text|image|speech: DIR}``, replacing or adding to the bundle's.
        layout: without a bundle: a layout JSON file, ``aromni-7b`` or ``compact`` (sized from tokenizers).
        style: prompt style (``official`` / ``paper``); default the bundle's, else ``official``.
        max_len: samples with more tokens are dropped (``too_long`` in the report).
        rows_per_shard: rows per output parquet file.
        chunk_size: records per work unit (sources may override it).
        image_batch: images per image-tokenizer call.
        max_audio_seconds: longer audio files are skipped (``audio_too_long``); ``None`` for no limit.
        workers: worker processes (1: in-process).
        keep_chunks: keep ``OUT/.build`` after a successful build.
        start_method: how worker processes start (``fork``: default where available, they inherit the loaded
            tokenizers; ``spawn`` / ``forkserver``: each loads them).
        root: base directory of relative paths.
    """

    sources: list[dict[str, Any]]
    out: str | None = None
    bundle: str | None = None
    tokenizers: dict[str, str | None] | None = None
    layout: Any = None
    style: str | None = None
    max_len: int = 4096
    rows_per_shard: int = 4096
    chunk_size: int = 256
    image_batch: int = 16
    max_audio_seconds: float | None = 600.0
    workers: int = 1
    keep_chunks: bool = False
    start_method: str | None = None
    root: str = "."
    base: Path = field(default=Path("."), repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.sources, list) or not self.sources:
            raise ConfigError("the build config needs a non-empty 'sources' list")
        for name in ("max_len", "rows_per_shard", "chunk_size", "image_batch", "workers"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"data config: {name} must be a positive integer, got {v!r}")
        if self.max_audio_seconds is not None and not (
            isinstance(self.max_audio_seconds, (int, float)) and self.max_audio_seconds > 0
        ):
            raise ConfigError(
                f"data config: max_audio_seconds must be positive or null, got {self.max_audio_seconds!r}"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, object], *, config_dir: str | Path = ".") -> BuildConfig:
        if not isinstance(d, dict):
            raise ConfigError("the build config must be a YAML mapping")
        known = {f.name for f in dataclasses.fields(cls)} - {"base"}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"data config: unknown keys {sorted(str(k) for k in unknown)}",
                              f"known keys: {sorted(known)}")
        if not d.get("sources"):
            raise ConfigError("data config needs a `sources:` list of what to tokenize",
                              "e.g. sources: [{type: text, paths: [corpus.txt]}] (see docs/data.md)")
        if not isinstance(d["sources"], list) or not all(isinstance(s, dict) for s in d["sources"]):
            raise ConfigError("data config: `sources:` must be a list of mappings (type, paths, ...)",
                              f"got {describe(d['sources'])} (see docs/data.md)")
        cfg = dataclass_from_dict(cls, d, "data config", noun="keys")
        root = Path(os.path.expanduser(str(cfg.root)))
        cfg.base = (root if root.is_absolute() else Path(config_dir) / root).resolve()
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> BuildConfig:
        path = Path(path)
        return cls.from_dict(read_yaml(path), config_dir=path.parent)

    def resolve(self, p: str | Path) -> Path:
        p = Path(os.path.expanduser(str(p)))
        return p if p.is_absolute() else self.base / p

    def options(self) -> dict[str, JSONValue]:
        return {
            "max_len": self.max_len,
            "image_batch": self.image_batch,
            "max_audio_seconds": self.max_audio_seconds,
        }

    def public(self) -> dict[str, JSONValue]:
        d = dataclasses.asdict(self)
        d.pop("base")
        d["root"] = str(self.base)
        return d


# ---------------------------------------------------------------- planning and resume
def _fingerprint(
    cfg: BuildConfig, sources: list[Any], kit_ids: dict[str, Any], layout: dict[str, Any], style: str
) -> str:
    """Everything the chunks' content depends on (not rows_per_shard, workers, out)."""
    h = hashlib.sha256()
    fixed = {
        "version": BUILDER_VERSION,
        "sources": cfg.sources,
        "chunk_size": cfg.chunk_size,
        "max_len": cfg.max_len,
        "image_batch": cfg.image_batch,
        "max_audio_seconds": cfg.max_audio_seconds,
        "root": str(cfg.base),
        "tokenizers": {m: v["sha256"] for m, v in kit_ids.items()},
        "layout": layout,
        "style": style,
    }
    h.update(json.dumps(fixed, sort_keys=True, default=str).encode())
    for src in sources:
        for f in src.input_files():
            st = f.stat()
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _prepare_out(out: Path, fingerprint: str, overwrite: bool) -> None:
    """Refuse to clobber, start fresh, or accept a resumable unfinished build of the same fingerprint."""
    stage = out / STAGE
    plan = stage / "plan.json"
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file", "--out must name a directory")
    if overwrite and out.exists():
        (out / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(stage, ignore_errors=True)
        for d in out.iterdir():
            if d.is_dir():
                for f in d.glob("shard-*.parquet"):
                    f.unlink()
    elif (out / MANIFEST).exists():
        raise InputError(f"{out} already holds a finished build", "choose another --out or pass --overwrite")
    elif plan.is_file():
        old = read_json(plan).get("fingerprint")
        if old != fingerprint:
            raise InputError(
                f"{out} holds an unfinished build of a different config, tokenizers or input files",
                "pass --overwrite to start over, or restore what changed to resume it",
            )
    elif out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty", "choose another --out or pass --overwrite")
    stage.mkdir(parents=True, exist_ok=True)
    if not plan.is_file():
        atomic_write_json(plan, {"fingerprint": fingerprint, "builder_version": BUILDER_VERSION})
    chunks_dir = stage / "chunks"
    chunks_dir.mkdir(exist_ok=True)
    for leftover in chunks_dir.glob(".*"):  # temp dirs of chunks a killed worker never finished
        shutil.rmtree(leftover, ignore_errors=True)


# ---------------------------------------------------------------- running chunks
def _progress(total: int, done: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=done,
        unit="chunk",
        desc="data build",
        dynamic_ncols=True,
        disable=not enabled or not sys.stderr.isatty(),
    )


def _run_serial(
    worker: Worker,
    pending: list[dict[str, Any]],
    stage: str,
    bar: Any,
    on_chunk: Callable[[dict[str, Any]], None] | None,
) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same arithmetic as a worker process, so the output is the same
    try:
        for c in pending:
            summary = worker.run(c, stage)
            bar.update(1)
            if on_chunk:
                on_chunk(summary)
    finally:
        torch.set_num_threads(threads)


def _start_method(requested: str | None) -> str:
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    if requested is not None:
        if requested not in methods:
            raise ConfigError(
                f"start_method {requested!r} is not available here", f"one of {', '.join(methods)}"
            )
        return requested
    # fork: workers inherit the loaded tokenizers (no per-worker start-up); spawn where fork does not exist.
    return "fork" if "fork" in methods else "spawn"


def _run_parallel(
    cfg: BuildConfig,
    worker: Worker,
    pending: list[dict[str, Any]],
    stage: str,
    bar: Any,
    on_chunk: Callable[[dict[str, Any]], None] | None,
    workers: int,
) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    method = _start_method(cfg.start_method)
    set_inherited(worker if method == "fork" else None)
    # Forked children must not reuse the Rust tokenizer's thread pool (it would warn and disable it anyway).
    saved_env = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context(method),
        initializer=init_process,
        initargs=(worker.kit.spec, cfg.sources, str(cfg.base), cfg.options()),
    )
    try:
        futures = {pool.submit(run_in_process, c, stage) for c in pending}
        while futures:
            finished, futures = wait(futures, return_when=FIRST_COMPLETED)
            for f in finished:
                summary = f.result()
                bar.update(1)
                if on_chunk:
                    on_chunk(summary)
    except BrokenProcessPool:
        raise AromniError(
            "a data worker process died (killed, or out of memory)",
            "run the same command again: finished chunks are kept and the build resumes",
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        set_inherited(None)
        if saved_env is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved_env


# ---------------------------------------------------------------- finalize
def _merge_summaries(
    summaries: list[dict[str, Any]], sources: list[Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(splits, report) of the manifest from the chunk summaries."""
    splits: dict[str, Any] = {}
    skipped: dict[str, int] = defaultdict(int)
    examples: dict[str, list[str]] = defaultdict(list)
    per_source = [
        {"name": s.name, "type": s.type_name, "records": 0, "samples": 0, "skipped": defaultdict(int)}
        for s in sources
    ]
    for sm in summaries:
        src = per_source[sm["source"]]
        src["records"] += sm["records"]
        for reason, n in sm["skipped"].items():
            skipped[reason] += n
            src["skipped"][reason] += n
            room = MAX_EXAMPLES - len(examples[reason])
            examples[reason].extend(sm["examples"].get(reason, [])[: max(room, 0)])
        for split, tasks in sm["stats"].items():
            sp = splits.setdefault(
                split, {"rows": 0, "tokens": 0, "response_tokens": 0, "tasks": {}, "groups": {}}
            )
            for task, groups in tasks.items():
                for group, (rows, toks, resp) in groups.items():
                    src["samples"] += rows
                    for key, bucket in (("tasks", task), ("groups", group)):
                        b = sp[key].setdefault(bucket, {"rows": 0, "tokens": 0})
                        b["rows"] += rows
                        b["tokens"] += toks
                    sp["rows"] += rows
                    sp["tokens"] += toks
                    sp["response_tokens"] += resp
    for src in per_source:
        src["skipped"] = dict(src["skipped"])
    report = {
        "records": sum(s["records"] for s in per_source),
        "samples": sum(s["samples"] for s in per_source),
        "skipped": dict(sorted(skipped.items())),
        "examples": {k: examples[k] for k in sorted(examples)},
        "sources": per_source,
        "note": "'too_long' counts samples (one record can give several); every other reason counts records",
    }
    return splits, report


def _write_split(out: Path, split: str, parts: list[Path], rows_per_shard: int) -> int:
    """Concatenate the chunk files of ``split`` (in chunk order) into shards of ``rows_per_shard`` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dest = out / split
    dest.mkdir(parents=True, exist_ok=True)
    for f in dest.glob("shard-*.parquet"):
        f.unlink()
    buf: list[Any] = []
    n_buf = shards = 0

    def emit(table: Any) -> None:
        nonlocal shards
        with atomic_path(dest / f"shard-{shards:05d}.parquet") as tmp:
            pq.write_table(table, tmp)
        shards += 1

    for part in parts:
        t = pq.read_table(part)
        buf.append(t)
        n_buf += t.num_rows
        while n_buf >= rows_per_shard:
            table = pa.concat_tables(buf)
            emit(table.slice(0, rows_per_shard))
            rest = table.slice(rows_per_shard)
            buf, n_buf = ([rest] if rest.num_rows else []), rest.num_rows
    if n_buf:
        emit(pa.concat_tables(buf))
    return shards


def _finalize(
    cfg: BuildConfig,
    out: Path,
    chunk_ids: list[str],
    sources: list[Source],
    kit: Toolkit,
    kit_ids: dict[str, JSONValue],
    fingerprint: str,
) -> dict[str, JSONValue]:
    stage = out / STAGE / "chunks"
    summaries = [read_json(stage / c / SUMMARY) for c in chunk_ids]
    splits, report = _merge_summaries(summaries, sources)
    for split in sorted(splits):
        parts = [stage / c / split / "shard-00000.parquet" for c in chunk_ids]
        splits[split]["shards"] = _write_split(
            out, split, [p for p in parts if p.is_file()], cfg.rows_per_shard
        )
    extra = {
        "tokenizers": kit_ids,
        "prompt_style": kit.style.name,
        "max_len": cfg.max_len,
        "builder": {"name": "aromni data build", "version": BUILDER_VERSION, "fingerprint": fingerprint},
        "config": cfg.public(),
    }
    write_manifest(out, kit.layout, splits, report, extra)
    if not cfg.keep_chunks:
        shutil.rmtree(out / STAGE, ignore_errors=True)
    return read_json(out / MANIFEST)


def build(
    cfg: BuildConfig,
    *,
    out: str | Path | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    on_chunk: Callable[[dict[str, JSONValue]], None] | None = None,
) -> dict[str, JSONValue]:
    """Run (or resume) a data build and return its manifest.

    Args:
        cfg: the build config.
        out: output directory (default ``cfg.out``).
        workers: worker processes (default ``cfg.workers``; 1 runs in-process).
        overwrite: replace an existing build in ``out``.
        progress: show a progress bar (only on a terminal).
        on_chunk: called in this process with each finished chunk's summary (progress reporting; an exception
            it raises stops the build, which can then be resumed).
    """
    target = out if out is not None else cfg.out
    if target is None:
        raise ConfigError("no output directory", "set 'out' in the config or pass --out")
    out_dir = Path(target) if out is not None else cfg.resolve(target)
    n_workers = cfg.workers if workers is None else int(workers)
    if n_workers < 1:
        raise ConfigError(f"workers must be at least 1, got {n_workers}")
    kit = load_toolkit(
        {"bundle": cfg.bundle, "tokenizers": cfg.tokenizers, "layout": cfg.layout, "style": cfg.style},
        cfg.base,
    )
    sources = [make_source(i, s, cfg.base) for i, s in enumerate(cfg.sources)]
    for src in sources:
        missing = [m for m in sorted(src.needs()) if kit.tokenizer(m) is None]
        if missing:
            raise ConfigError(
                f"source {src.name!r} needs a {' and '.join(missing)} tokenizer",
                "add it under tokenizers: or use a bundle that has it",
            )
    chunks = [c.to_dict() for src in sources for c in src.plan(src.chunk_size or cfg.chunk_size)]
    kit_ids = identities(kit)
    fingerprint = _fingerprint(cfg, sources, kit_ids, kit.spec.layout, kit.style.name)
    _prepare_out(out_dir, fingerprint, overwrite)
    stage = out_dir / STAGE / "chunks"
    pending = [c for c in chunks if not (stage / c["id"] / SUMMARY).is_file()]
    worker = Worker(kit, cfg.sources, str(cfg.base), cfg.options())
    bar = _progress(len(chunks), len(chunks) - len(pending), progress)
    try:
        if pending and (n_workers == 1 or len(pending) == 1):
            _run_serial(worker, pending, str(stage), bar, on_chunk)
        elif pending:
            _run_parallel(cfg, worker, pending, str(stage), bar, on_chunk, min(n_workers, len(pending)))
    finally:
        bar.close()
    return _finalize(cfg, out_dir, [c["id"] for c in chunks], sources, kit, kit_ids, fingerprint)


# ---------------------------------------------------------------- report
def format_report(manifest: Mapping[str, JSONValue], root: str | Path = "") -> str:
    """Human-readable summary of a build: rows and tokens per split, task and group; skipped records."""
    lines = [f"shards: {root}" if root else "shards:"]
    gen = (manifest.get("report") or {}).get("generator") if isinstance(manifest.get("report"), dict) else None
    if gen:
        lines[0] += f" (written by {gen})"
    splits = manifest.get("splits")
    for split, sp in sorted(splits.items() if isinstance(splits, dict) else []):
        sp = sp if isinstance(sp, dict) else {}
        line = f"  {split}: {_count(sp.get('rows'))} samples"
        if "tokens" in sp:  # older synthetic corpora and hand-written manifests count rows only
            line += f", {_count(sp['tokens'])} tokens ({_count(sp.get('response_tokens'))} response)"
        lines.append(line + f" in {sp.get('shards', '?')} shard(s)")
        for key in ("tasks", "groups"):
            if isinstance(sp.get(key), dict) and sp[key]:
                parts = ", ".join(f"{k} {_count(_get(v, 'rows'))} ({_count(_get(v, 'tokens'))} tok)"
                                  for k, v in sorted(sp[key].items()))
                lines.append(f"    {key}: {parts}")
    rep = manifest.get("report", {})
    rep = rep if isinstance(rep, dict) else {}
    lines.append(f"records read: {_count(rep.get('records', 0))}; samples written: {_count(rep.get('samples', 0))}")
    skipped = rep.get("skipped", {})
    if not skipped or not isinstance(skipped, dict):
        lines.append("skipped: none")
    else:
        lines.append("skipped (" + str(rep.get("note", "")) + "):")
        for reason, n in skipped.items():
            lines.append(f"  {reason}: {_count(n)}")
            for ex in _get(rep.get("examples"), reason) or []:
                lines.append(f"      e.g. {ex}")
    return "\n".join(lines)


def _get(d: JSONValue, key: str) -> JSONValue:
    return d.get(key) if isinstance(d, dict) else None


def _count(n: object) -> str:
    """A count as the report prints it (``1,234``; ``?`` when the manifest does not say)."""
    return f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else "?"
