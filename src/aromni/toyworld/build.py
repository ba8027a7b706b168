"""Build a world directory: plan, render images and speech in worker processes, write records and manifest.

The world is assembled in ``<out>.partial`` and renamed to ``<out>`` only when complete, so a half-built
directory is never mistaken for a finished one. Rerunning the same command resumes: media files already in the
partial directory (each written atomically) are kept. ``version`` picks the world: 1 (:mod:`~.plan`, the closed
grammar of the shipped bundle) or 2 (:mod:`~.plan_v2` and :mod:`~.build_v2`, the default).
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from aromni.errors import AromniError, InputError
from aromni.toyworld import build_v2, grammar
from aromni.toyworld.attributes import WORLD_VERSION, WORLD_VERSIONS, vocabulary
from aromni.toyworld.images import RenderSpec, render
from aromni.toyworld.plan import WorldPlan, plan_world
from aromni.toyworld.plan_v2 import WorldPlanV2, plan_world_v2
from aromni.toyworld.records import dumps_jsonl
from aromni.toyworld.sizes import IMAGE_TASKS, SIZES, SIZES_V2, TASKS, WorldSize
from aromni.toyworld.splits import SPLITS
from aromni.toyworld.voices import ASSISTANT_VOICE, SAMPLE_RATE, Voice, require_espeak, synthesize
from aromni.utils.extras import optional
from aromni.utils.io import JSONValue, atomic_path, atomic_write_json, atomic_write_text, read_json


def is_complete(world: str | Path) -> bool:
    """True when ``world`` holds a finished build (its manifest says so)."""
    path = Path(world) / "manifest.json"
    return path.is_file() and bool(read_json(path).get("complete"))


def _image_job(args: tuple[str, str, dict]) -> tuple[str, float]:
    root, rel, spec = args
    dest = Path(root) / rel
    if not dest.exists():
        with atomic_path(dest, suffix=".png") as tmp:
            render(RenderSpec.from_dict(spec)).save(tmp, format="PNG")
    return rel, 0.0


def _speech_job(args: tuple[str, str, str, dict, int, int]) -> tuple[str, float]:
    sf = optional("soundfile", extra="audio", feature="writing audio")

    root, rel, text, voice, sj, pj = args
    dest = Path(root) / rel
    if dest.exists():
        return rel, sf.info(str(dest)).frames / SAMPLE_RATE
    wav = synthesize(text, Voice(**voice), speed_jitter=sj, pitch_jitter=pj)
    with atomic_path(dest, suffix=".wav") as tmp:
        sf.write(str(tmp), wav, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return rel, len(wav) / SAMPLE_RATE


Job = tuple[Callable[[tuple], tuple[str, float]], tuple]


def _jobs(plan: WorldPlan | WorldPlanV2, root: Path) -> list[Job]:
    """Every media job of ``plan``: images first, then speech (version 2 has its own speech job)."""
    jobs: list[Job] = [
        (_image_job, (str(root), j.path, j.spec.to_dict())) for j in plan.images]
    if isinstance(plan, WorldPlanV2):
        return jobs + [(build_v2.speech_job, args) for args in build_v2.speech_args(plan, root)]
    jobs += [
        (_speech_job, (str(root), j.path, j.text, j.voice.to_dict(), j.speed_jitter, j.pitch_jitter))
        for j in plan.speech
    ]
    return jobs


def _run_jobs(plan: WorldPlan | WorldPlanV2, root: Path, workers: int, progress: bool) -> dict[str, float]:
    from tqdm import tqdm

    jobs = _jobs(plan, root)
    durations: dict[str, float] = {}
    bar = tqdm(total=len(jobs), desc="toyworld media", unit="file", disable=None if progress else True)
    if workers <= 1:
        for fn, args in jobs:
            rel, dur = fn(args)
            durations[rel] = dur
            bar.update()
    else:
        with mp.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
            for fn in dict.fromkeys(f for f, _ in jobs):  # images, then speech
                batch = [args for f, args in jobs if f is fn]
                for rel, dur in pool.imap_unordered(fn, batch, chunksize=16):
                    durations[rel] = dur
                    bar.update()
    bar.close()
    return durations


def _espeak_version() -> str:
    out = subprocess.run([require_espeak(), "--version"], capture_output=True, text=True, check=False).stdout
    return out.strip().split("  ")[0]


def _manifest_v2(plan: WorldPlanV2, durations: dict[str, float], build_s: float, workers: int
                 ) -> dict[str, JSONValue]:
    return {"format": "aromni-toyworld", "version": plan.version, "complete": True,
            **build_v2.manifest(plan, durations), "espeak_ng": _espeak_version(),
            "build_seconds": round(build_s, 1), "workers": workers}


def _manifest(plan: WorldPlan, durations: dict[str, float], build_s: float, workers: int) -> dict[str, JSONValue]:
    counts: dict[str, dict[str, int]] = collections.defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    for split, rows in plan.records.items():
        for r in rows:
            counts[r["task"]][split] += 1
    speech_s = collections.Counter()
    clips = collections.Counter()
    for j in plan.speech:
        speech_s[j.split] += durations[j.path]
        clips[j.split] += 1
    return {
        "format": "aromni-toyworld",
        "version": 1,
        "complete": True,
        "seed": plan.seed,
        "size": plan.size.name,
        "records": dict(counts),
        "images": dict(collections.Counter(j.split for j in plan.images)),
        "heldout_images_test": sum(j.heldout_combo for j in plan.images),
        "speech_clips": dict(clips),
        "speech_hours": {k: round(v / 3600, 3) for k, v in speech_s.items()},
        "speech_max_s": round(max((durations[j.path] for j in plan.speech), default=0.0), 3),
        "voices": {
            "train": [v.to_dict() for v in plan.train_voices],
            "test": [v.to_dict() for v in plan.test_voices],
            "assistant": ASSISTANT_VOICE.to_dict(),
        },
        "heldout_combos": [list(c) for c in plan.heldout],
        "attributes": vocabulary(),
        "spoken_vocabulary": grammar.spoken_vocabulary(),
        "sample_rate": SAMPLE_RATE,
        "image_size": 64,
        "espeak_ng": _espeak_version(),
        "build_seconds": round(build_s, 1),
        "workers": workers,
    }


def _write_indexes(plan: WorldPlan, root: Path, durations: dict[str, float]) -> None:
    for split, rows in plan.records.items():
        atomic_write_text(root / "records" / f"{split}.jsonl", dumps_jsonl(rows))
    images = [{"path": j.path, "split": j.split, "attrs": j.spec.attrs.to_dict(), "heldout_combo": j.heldout_combo,
               "spec": j.spec.to_dict()} for j in plan.images]
    atomic_write_text(root / "images.jsonl", dumps_jsonl(images))
    speech = [{"path": j.path, "split": j.split, "transcript": j.text, "voice": j.voice.id,
               "role": "assistant" if j.voice.id == ASSISTANT_VOICE.id else "user",
               "duration_s": round(durations[j.path], 4)} for j in plan.speech]
    atomic_write_text(root / "speech.jsonl", dumps_jsonl(speech))


def _prepare_partial(out: Path, fingerprint: dict[str, JSONValue], overwrite: bool) -> Path:
    partial = out.with_name(out.name + ".partial")
    stamp = partial / "build.json"
    if partial.exists():
        same = stamp.is_file() and read_json(stamp) == fingerprint
        if not same and not overwrite:
            raise InputError(
                f"{partial} holds an unfinished build with different settings",
                "rerun with the same --size/--seed to resume, or pass --overwrite to start again",
            )
        if not same:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stamp, fingerprint)
    return partial


def _check_custom_size(size: WorldSize) -> WorldSize:
    """``size`` when every split has a count and every count is a non-negative int; else a clear error."""
    fix = "give images and every task's records a count for each of train, validation and test"
    for what, counts in [("images", size.images), *((f"records[{t!r}]", c) for t, c in size.records.items())]:
        if set(counts) != set(SPLITS):
            raise InputError(f"world size {size.name!r}: {what} has splits {sorted(counts)}", fix)
        bad = {k: v for k, v in counts.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0}
        if bad:
            raise InputError(f"world size {size.name!r}: {what} has bad counts {bad}", "counts are ints >= 0")
    unknown = sorted(set(size.records) - set(TASKS))
    if unknown:
        raise InputError(f"world size {size.name!r}: unknown tasks {unknown}", f"use tasks of {list(TASKS)}")
    if sum(size.images.values()) == 0 or any(size.images[s] == 0 and any(size.records.get(t, {}).get(s, 0)
                                                                         for t in IMAGE_TASKS) for s in SPLITS):
        raise InputError(f"world size {size.name!r}: image records in a split without images",
                         "give that split images, or no records of the image tasks")
    return WorldSize(size.name, dict(size.images), {t: dict(size.records.get(t, dict.fromkeys(SPLITS, 0)))
                                                    for t in TASKS})


def build_world(
    out: str | Path, *, size: str | WorldSize = "small", seed: int = 0, workers: int = 1, overwrite: bool = False,
    progress: bool = True, version: int = WORLD_VERSION,
) -> dict[str, JSONValue]:
    """Build (or resume building) a world of ``version`` in ``out``; returns its manifest.

    Version 1 is the closed-grammar world the shipped bundle was trained on (kept byte-identical for every
    seed); version 2 (the default) adds an open vocabulary, held-out words, phrasings, pairs and voices.
    ``size`` is a preset's name or a :class:`WorldSize` of one's own (its counts are then part of the
    world's identity: the manifest's ``size_counts``). The held-out pairs, words and phrasings depend on the
    seed alone, so a custom-size world of the same seed holds out exactly what the preset worlds do."""
    if version not in WORLD_VERSIONS:
        raise InputError(f"unknown world version {version!r}", f"choose one of {list(WORLD_VERSIONS)}")
    sizes = SIZES if version == 1 else SIZES_V2
    fingerprint: dict[str, JSONValue]
    if isinstance(size, WorldSize):
        world_size = _check_custom_size(size)
        fingerprint = {"version": version, "seed": seed, "size": size.name,
                       "size_counts": {"images": world_size.images, "records": world_size.records}}
    elif size in sizes:
        world_size = sizes[size]
        fingerprint = {"version": version, "seed": seed, "size": size}
    else:
        raise InputError(f"unknown world size {size!r}", f"choose one of {list(sizes)}")
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if is_complete(out) and not overwrite:
            manifest = read_json(out / "manifest.json")
            if {k: manifest.get(k) for k in fingerprint} == fingerprint:
                return manifest
        if not overwrite:
            raise InputError(f"{out} already exists and is not this world", "choose another --out or pass --overwrite")
    require_espeak()
    t0 = time.perf_counter()
    partial = _prepare_partial(out, fingerprint, overwrite)
    if version == 1:
        plan = plan_world(world_size, seed)
        durations = _run_jobs(plan, partial, workers, progress)
        _write_indexes(plan, partial, durations)
        manifest = _manifest(plan, durations, time.perf_counter() - t0, workers)
    else:
        plan_v2 = plan_world_v2(world_size, seed)
        durations = _run_jobs(plan_v2, partial, workers, progress)
        build_v2.write_indexes(plan_v2, partial, durations)
        manifest = _manifest_v2(plan_v2, durations, time.perf_counter() - t0, workers)
    if "size_counts" in fingerprint:
        manifest["size_counts"] = fingerprint["size_counts"]
    (partial / "build.json").unlink()
    atomic_write_json(partial / "manifest.json", manifest)
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        shutil.rmtree(old)
    os.replace(partial, out)
    return manifest


__all__ = ["AromniError", "build_world", "is_complete"]
