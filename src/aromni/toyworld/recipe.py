"""The toy-world recipe: every stage of AR-Omni on 2 CPU cores, in one resumable command.

``aromni toyworld train --config configs/toyworld/full.yaml --out runs/toy`` runs

1. ``world``    build the procedural world (or reuse ``world.path``);
2. ``text``     train the BPE on the world's text (special tokens from the compact layout);
3. ``tokenizers`` train the image VQGAN and our streaming speech codec — in parallel, one core each;
4. ``shards``   tokenize the world's dialog records into parquet shards (``aromni data build``);
5. ``pretrain_images`` stage 1's optional image-first phase: only the image pairs (T2I, captions), from scratch;
   skipped when the YAML has no ``pretrain_images`` section;
6. ``pretrain`` stage 1 (weighted NTP + perceptual loss) on the single-turn task pairs, starting from the image
   phase's model when there is one;
7. ``sft``      stage 2 (response-only loss) on every task, starting from stage 1;
8. ``bundle``   export the final bundle in fp16 (what ships in the repo);
9. ``eval``     score the bundle on the held-out test split with the independent judges, write the report.

Each finished stage leaves ``OUT/stages/<stage>.json`` (its wall time and summary) and is skipped on a re-run,
so an interrupted recipe continues where it stopped; the training stages also resume from their own
checkpoints mid-stage. ``OUT/recipe_summary.json`` gathers the stage timings.

The YAML has one section per stage; the sections of the trainers are passed through to their own configs
(``aromni vqgan train`` / ``aromni codec train`` ``key=value`` settings and :class:`~aromni.training.config.
TrainConfig` keys), so every knob those commands have is available here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from aromni.bundle import Bundle, save_bundle
from aromni.errors import ConfigError, InputError
from aromni.tokenizers.text import TextTokenizer
from aromni.toyworld.attributes import WORLD_VERSION
from aromni.toyworld.build import build_world, is_complete
from aromni.toyworld.evaluation import SuiteConfig, run_suite
from aromni.toyworld.report import write_report
from aromni.toyworld.sizes import SIZES, SIZES_V2, WorldSize, with_counts
from aromni.training.data.build import BuildConfig, build
from aromni.training.loop import find_checkpoint
from aromni.training.recipes import pretrain, sft
from aromni.utils.config import apply_overrides, dataclass_from_dict, deep_merge, read_yaml
from aromni.utils.io import JSONValue, atomic_path, atomic_write_json, atomic_write_text, read_json
from aromni.vocab.layout import VocabLayout
from aromni.vocab.tasks import ASR, CAPTION, T2I, TEXT, TEXT_QA, TTS

STAGES = ("world", "text", "tokenizers", "shards", "pretrain_images", "pretrain", "sft", "bundle", "eval")

#: Tasks of stage 1: the single-turn pairs of the paper's pre-training (Table 10), plus text-only data.
PRETRAIN_TASKS = [t.name for t in (ASR, TTS, CAPTION, T2I, TEXT, TEXT_QA)]

#: Tasks of stage 1's optional image-first phase (``pretrain_images``): the image pairs alone.
IMAGE_PHASE_TASKS = [t.name for t in (T2I, CAPTION)]

#: Evaluation tasks of the ablation table (the paper's Table 7 scores I2T, T2I, ASR and TTS).
ABLATION_TASKS = tuple(t.name for t in (ASR, TTS, CAPTION, T2I))


@dataclass
class RecipeConfig:
    """The recipe's YAML (see ``configs/toyworld/*.yaml``).

    Attributes:
        seed: seeds the world, the trainers and the evaluation.
        world: ``{size, workers, path, version, images, records}``; ``path`` reuses an already built world;
            ``version`` (default the current world version) picks the world generation; ``images`` (split ->
            count) and ``records`` (task -> split -> count) replace some of the ``size`` preset's counts.
        text: ``{vocab_size}`` of the BPE.
        image: ``aromni vqgan train`` settings (``preset``, ``steps``, ``time_limit_min``, ...).
        speech: ``aromni codec train`` settings (``preset``, ``steps``, ``max_minutes``, ...).
        tokenizers_parallel: train the VQGAN and the codec at the same time (one thread each).
        shards: ``aromni data build`` settings (``max_len``, ``workers``, ...).
        model: ``DecoderConfig`` fields of the AR model (trained from scratch).
        pretrain_images: ``TrainConfig`` overrides of stage 1's image-first phase (T2I and captions only, from
            scratch); empty (the default) skips the phase. When set, ``pretrain`` starts from its model with a
            fresh optimiser and schedule. Fresh images per request are what teach T2I shape here (docs/toyworld.md,
            "Image experiments"), so a world with many image records (``world.images`` / ``world.records``) goes
            with it.
        pretrain, sft: ``TrainConfig`` overrides of the two stages.
        export_dtype: weight dtype of the exported bundle.
        eval: evaluation settings (``limit`` per task, ``split``); ``enabled: false`` skips it.
        ablations: stage-1 variants (name -> ``TrainConfig`` overrides) for ``aromni toyworld ablate``, which
            trains each at the main stage-1's step count and scores them on the pre-training tasks (Table 7).
    """

    # Raw sections, each validated by the stage that reads it (``Any``: dataclass_from_dict passes them through
    # unchanged; a narrower annotation would make it coerce the values).
    seed: int = 0
    world: dict[str, Any] = field(default_factory=lambda: {"size": "full", "workers": 2})
    text: dict[str, Any] = field(default_factory=lambda: {"vocab_size": 640})
    image: dict[str, Any] = field(default_factory=dict)
    speech: dict[str, Any] = field(default_factory=dict)
    tokenizers_parallel: bool = True
    shards: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    pretrain_images: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)
    sft: dict[str, Any] = field(default_factory=dict)
    export_dtype: str = "float16"
    eval: dict[str, Any] = field(default_factory=dict)
    ablations: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Iterable[str] = ()) -> RecipeConfig:
        raw = apply_overrides(read_yaml(path), overrides)
        return dataclass_from_dict(cls, raw, str(path), noun="recipe sections")


def shard_config(records: list[str], tokenizers: str | Path, settings: dict[str, JSONValue] | None = None
                 ) -> BuildConfig:
    """The recipe's shard build of the dialog JSONL files ``records`` (globs) with the tokenizers in
    ``tokenizers/{text,image,speech}``; ``settings`` (the ``shards`` section) override the defaults."""
    return BuildConfig(sources=[{"type": "dialogs", "paths": list(records)}],
                       tokenizers={m: str(Path(tokenizers) / m) for m in ("text", "image", "speech")},
                       layout="compact", style="paper", **{"max_len": 512, "workers": 2, **(settings or {})})


class Recipe:
    """Runs the stages in order, skipping finished ones. ``log`` receives one line per event."""

    def __init__(self, cfg: RecipeConfig, out: str | Path, *, log: Callable[[str], None] = print,
                 stop_after: str | None = None):
        self.cfg = cfg
        self.out = Path(out)
        self.log = log
        self.stop_after = stop_after
        if stop_after is not None and stop_after not in STAGES:
            raise InputError(f"unknown stage {stop_after!r}", f"one of {', '.join(STAGES)}")

    # ------------------------------------------------------------------ paths
    @property
    def world_dir(self) -> Path:
        return Path(self.cfg.world["path"]) if self.cfg.world.get("path") else self.out / "world"

    @property
    def tok_root(self) -> Path:
        return self.out / "tokenizers"

    def tok_dir(self, m: str) -> Path:
        return self.tok_root / m

    @property
    def shards_dir(self) -> Path:
        return self.out / "shards"

    @property
    def bundle_dir(self) -> Path:
        return self.out / "bundle"

    # ------------------------------------------------------------------ driver
    def run(self) -> dict[str, JSONValue]:
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "recipe.yaml", yaml.safe_dump(self.cfg.__dict__, sort_keys=False))
        t0 = time.time()
        for stage in STAGES:
            marker = self.out / "stages" / f"{stage}.json"
            if marker.is_file():
                self.log(f"[{stage}] done already ({read_json(marker)['seconds']:.0f} s), skipping")
            else:
                self.log(f"[{stage}] starting")
                start = time.time()
                summary = getattr(self, f"stage_{stage}")() or {}
                seconds = time.time() - start
                atomic_write_json(marker, {"stage": stage, "seconds": round(seconds, 1), "summary": summary})
                self.log(f"[{stage}] finished in {seconds / 60:.1f} min")
            if stage == self.stop_after:
                break
        return self.write_summary(time.time() - t0)

    def write_summary(self, this_run_s: float) -> dict[str, JSONValue]:
        stages = {}
        for stage in STAGES:
            marker = self.out / "stages" / f"{stage}.json"
            if marker.is_file():
                stages[stage] = read_json(marker)["seconds"]
        summary = {"stages_seconds": stages, "total_minutes": round(sum(stages.values()) / 60, 1),
                   "this_invocation_minutes": round(this_run_s / 60, 1), "cpu_count": os.cpu_count()}
        atomic_write_json(self.out / "recipe_summary.json", summary)
        self.log(f"recipe: {summary['total_minutes']} min of stage time in total")
        return summary

    # ------------------------------------------------------------------ stages
    def stage_world(self) -> dict[str, JSONValue]:
        if self.cfg.world.get("path"):
            if not is_complete(self.world_dir):
                raise InputError(f"{self.world_dir}: not a finished toy world", "build it or drop world.path")
            return {"reused": str(self.world_dir)}
        manifest = build_world(self.world_dir, size=self.world_size(), seed=self.cfg.seed,
                               workers=int(self.cfg.world.get("workers", 2)),
                               version=int(self.cfg.world.get("version", WORLD_VERSION)))
        return {"records": manifest.get("records"), "build_seconds": manifest.get("build_seconds")}

    def world_size(self) -> str | WorldSize:
        """The ``world.size`` preset, with ``world.images`` / ``world.records`` counts replacing its own."""
        name = self.cfg.world.get("size", "full")
        images, records = self.cfg.world.get("images"), self.cfg.world.get("records")
        if images is None and records is None:
            return name
        version = int(self.cfg.world.get("version", WORLD_VERSION))
        presets = SIZES if version == 1 else SIZES_V2
        if name not in presets:
            raise InputError(f"unknown world size {name!r}", f"choose one of {list(presets)}")
        if not isinstance(images or {}, dict) or not isinstance(records or {}, dict) or not all(
                isinstance(v, dict) for v in (records or {}).values()):
            raise InputError("world.images must map split -> count, world.records task -> split -> count",
                             "e.g. world: {size: full, images: {train: 46000}, records: {t2i: {train: 40000}}}")
        return with_counts(presets[name], images=images, records=records)

    def world_texts(self) -> list[str]:
        """Every string the model will see as text: text segments and transcripts of all training records,
        plus the prompt-style prefixes."""
        texts = ["USER:", "ASSISTANT:", "GPT:"]
        with open(self.world_dir / "records" / "train.jsonl", encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                for turn in rec["turns"]:
                    for seg in turn["segments"]:
                        if seg.get("text"):
                            texts.append(seg["text"])
                        if seg.get("transcript"):
                            texts.append(seg["transcript"])
        return texts

    def stage_text(self) -> dict[str, JSONValue]:
        specials = VocabLayout.compact(0, 0, 0).special_token_strings()
        tk = TextTokenizer.train(self.world_texts(), int(self.cfg.text.get("vocab_size", 640)), specials,
                                 min_frequency=int(self.cfg.text.get("min_frequency", 2)))
        dest = self.tok_dir("text")
        if dest.exists():
            shutil.rmtree(dest)
        tk.save_pretrained(dest)
        return {"vocab_size": tk.vocab_size}

    def _tokenizer_commands(self) -> dict[str, list[str]]:
        image_glob = str(self.world_dir / "images" / "train" / "*.png")
        audio_glob = str(self.world_dir / "speech" / "train" / "*.wav")
        image = {"seed": self.cfg.seed, "threads": 1, **self.cfg.image}
        speech = {"seed": self.cfg.seed, "threads": 1, **self.cfg.speech}
        cmds = {}
        for name, sub, flag, src, settings in (("image", "vqgan", "--images", image_glob, image),
                                               ("speech", "codec", "--audio", audio_glob, speech)):
            run_dir = self.out / "tokenizer_runs" / name
            resume = ["--resume"] if find_checkpoint(run_dir) is not None else []
            # A resumed run keeps its saved settings (both trainers refuse most changes on resume).
            kv = [f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in settings.items()
                  if not resume or k == "threads"]
            cmds[name] = [sys.executable, "-m", "aromni", sub, "train", flag, src, "--out", str(run_dir),
                          *resume, "--quiet", *kv]
        return cmds

    def stage_tokenizers(self) -> dict[str, JSONValue]:
        cmds = self._tokenizer_commands()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        with contextlib.ExitStack() as stack:
            logs = {m: stack.enter_context(open(self.out / f"tokenizer_{m}.log", "ab")) for m in cmds}
            if self.cfg.tokenizers_parallel:
                procs = {m: subprocess.Popen(c, stdout=logs[m], stderr=subprocess.STDOUT, env=env)
                         for m, c in cmds.items()}
                codes = {m: p.wait() for m, p in procs.items()}
            else:
                codes = {m: subprocess.call(c, stdout=logs[m], stderr=subprocess.STDOUT, env=env)
                         for m, c in cmds.items()}
        failed = [m for m, c in codes.items() if c != 0]
        if failed:
            raise InputError(f"tokenizer training failed for {failed}",
                             f"see {', '.join(str(self.out / f'tokenizer_{m}.log') for m in failed)}")
        for m in cmds:
            src = self.out / "tokenizer_runs" / m / "tokenizer"
            if self.tok_dir(m).exists():
                shutil.rmtree(self.tok_dir(m))
            shutil.copytree(src, self.tok_dir(m))
        return {m: str(self.tok_dir(m)) for m in cmds}

    def stage_shards(self) -> dict[str, JSONValue]:
        cfg = shard_config([str(self.world_dir / "records" / "*.jsonl")], self.tok_root, self.cfg.shards)
        manifest = build(cfg, out=self.shards_dir, overwrite=True, progress=False)
        return {"splits": manifest.get("splits"), "report": manifest.get("report")}

    def _train_yaml(self, stage: str, overrides: dict[str, JSONValue], out: Path, name: str | None = None,
                    *, after_images: bool = True) -> Path:
        """Write the YAML of a training stage: recipe defaults < stage section < ``overrides``.

        ``after_images``: stage 1 starts from the image phase's model when the recipe has one (the ablations
        pass ``False``: each variant trains from scratch)."""
        base: dict[str, JSONValue] = {
            "out": str(out), "seed": self.cfg.seed, "num_threads": 2,
            "data": {"root": str(self.shards_dir), "seq_len": 512, "micro_batch": 8},
            "eval": {"every": 250, "max_rows": 32},
            "checkpoint": {"every": 250, "keep_last": 2},
            "log": {"progress": True},
            "export": {"text": str(self.tok_dir("text")), "image": str(self.tok_dir("image")),
                       "speech": str(self.tok_dir("speech")), "style": "paper"},
        }
        from_scratch = stage == "pretrain_images" or (stage == "pretrain" and not (
            after_images and self.cfg.pretrain_images))
        if stage in ("pretrain", "pretrain_images"):
            base["data"]["tasks"] = list(PRETRAIN_TASKS if stage == "pretrain" else IMAGE_PHASE_TASKS)
            base["perceptual"] = {"table": str(self.tok_dir("image"))}
        if from_scratch:
            # The image codes start from the VQGAN's codebook (set pretrain.model.image_embed_init: "" to not).
            base["model"] = {"decoder": dict(self.cfg.model), "image_embed_init": str(self.tok_dir("image"))}
        elif stage == "pretrain":
            base["model"] = {"init_from": str(self.out / "pretrain_images" / "bundle")}
        else:
            base["model"] = {"init_from": str(self.out / "pretrain" / "bundle")}
            base["perceptual"] = {"table": str(self.tok_dir("image"))}
        merged = deep_merge(deep_merge(base, getattr(self.cfg, stage) or {}), overrides or {})
        path = self.out / "configs" / f"{name or stage}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, yaml.safe_dump(merged, sort_keys=False))
        return path

    def stage_pretrain_images(self) -> dict[str, JSONValue]:
        if not self.cfg.pretrain_images:
            return {"skipped": True}
        return _brief(pretrain.run(self._train_yaml("pretrain_images", {}, self.out / "pretrain_images")))

    def stage_pretrain(self) -> dict[str, JSONValue]:
        return _brief(pretrain.run(self._train_yaml("pretrain", {}, self.out / "pretrain")))

    def stage_sft(self) -> dict[str, JSONValue]:
        return _brief(sft.run(self._train_yaml("sft", {}, self.out / "sft")))

    def stage_bundle(self) -> dict[str, JSONValue]:
        """Re-export the SFT model in the shipping dtype (weights, tokenizers and layout as trained)."""
        src = Bundle.load(self.out / "sft" / "bundle")
        if self.bundle_dir.exists():
            shutil.rmtree(self.bundle_dir)
        dtype = getattr(torch, self.cfg.export_dtype)
        extra = {k: v for k, v in json.loads((self.out / "sft" / "bundle" / "config.json").read_text()).items()
                 if k not in ("format", "decoder", "layout", "bundle")}
        save_bundle(self.bundle_dir, src.decoder, src.layout, text=src.text, image=src.image, speech=src.speech,
                    style=src.style, generation=src.generation, dtype=dtype, extra=extra)
        for m in ("image", "speech"):  # the tokenizers load their stored weights back into float32 modules
            _store_floats_as(self.bundle_dir / m / "model.safetensors", dtype)
        size = sum(p.stat().st_size for p in self.bundle_dir.rglob("*") if p.is_file())
        return {"bytes": size, "dtype": self.cfg.export_dtype}

    def stage_eval(self) -> dict[str, JSONValue]:
        if not self.cfg.eval.get("enabled", True):
            return {"skipped": True}

        settings = {k: v for k, v in self.cfg.eval.items() if k not in ("enabled", "ablation_limits")}
        try:
            cfg = SuiteConfig(seed=self.cfg.seed, progress=False, **settings)
        except TypeError as e:
            raise ConfigError(f"recipe eval section: {e}", "keys are SuiteConfig fields: limits, tasks, split, ...") from None
        result = run_suite(str(self.bundle_dir), self.world_dir, cfg, log=self.log)
        runs = {stage: self.out / stage / "metrics.jsonl" for stage in ("pretrain_images", "pretrain", "sft")}
        md = write_report(result, self.out / "report", runs=runs, overwrite=True)
        data = result.to_dict()
        atomic_write_json(self.out / "eval.json", data)
        return {"report": str(md), "rows": [{k: r.get(k) for k in ("task", "metric", "shown", "pass")}
                                            for r in result.rows]}

    def ablate(self) -> Path:
        """The paper's Table 7 on this world: stage-1 variants at equal steps, scored on the pre-training tasks.

        Needs a finished ``pretrain`` stage (its tokenizers, shards and model are reused: the AR-Omni row *is*
        the main stage-1 model). Each variant trains with the stage-1 config plus its ``ablations`` overrides,
        from scratch, resumes if interrupted, and is skipped once exported. Writes ``OUT/ablation/report.md``.
        With an image-first phase the main stage-1 model had more steps, so the AR-Omni row is then trained
        from scratch like the variants (equal steps for every row).
        """
        if not (self.out / "stages" / "pretrain.json").is_file():
            raise InputError(f"{self.out}: stage 1 has not finished", "run `aromni toyworld train` first")
        if not self.cfg.ablations:
            raise ConfigError("the recipe config has no `ablations` section")
        variants = dict(self.cfg.ablations)
        bundles: dict[str, Path] = {}
        if self.cfg.pretrain_images:
            variants = {"ar-omni": {}, **variants}
        else:
            bundles["ar-omni"] = self.out / "pretrain" / "bundle"
        for name, overrides in variants.items():
            out = self.out / "ablations" / name
            if not (out / "bundle" / "config.json").is_file():
                self.log(f"[ablate] {name}: training")
                start = time.time()
                pretrain.run(self._train_yaml("pretrain", overrides, out, name=f"ablation_{name}",
                                              after_images=False))
                self.log(f"[ablate] {name}: trained in {(time.time() - start) / 60:.1f} min")
            bundles[name] = out / "bundle"
        limits = self.cfg.eval.get("ablation_limits", self.cfg.eval.get("limits"))
        cfg = SuiteConfig(seed=self.cfg.seed, progress=False, tasks=ABLATION_TASKS, limits=limits)
        results = []
        for name, bundle in bundles.items():
            self.log(f"[ablate] evaluating {name}")
            results.append((name, run_suite(str(bundle), self.world_dir, cfg, log=self.log)))
        runs = {name: b.parent / "metrics.jsonl" for name, b in bundles.items()}
        md = write_report(results[0][1], self.out / "ablation", runs=runs, ablation=results, overwrite=True)
        self.log(f"[ablate] wrote {md}")
        return md


def _store_floats_as(path: Path, dtype: torch.dtype) -> None:
    """Rewrite the floating-point tensors of a safetensors file in ``dtype`` (others unchanged), atomically.

    Halves the shipped VQGAN and codec; measured on the toy codec, decoding the same codes from fp16-stored
    weights differs from fp32 by at most 3e-4 (peak amplitude 0.68)."""
    if not path.is_file():
        return
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def _brief(result: object) -> dict[str, JSONValue]:
    if not isinstance(result, dict):
        return {}
    return {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool)) or v is None}
