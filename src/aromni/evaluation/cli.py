"""The public suites' part of ``aromni eval`` (flags and the run), kept beside the suites;
``aromni.cli.commands.eval`` registers the flags and routes every ``--suite`` other than ``toy`` here.

Every check that needs no model (flags, dataset layouts, judge paths, the run directory's set-up) runs before
any model is loaded. Under torchrun each rank runs :func:`run`; only rank 0 merges, writes the report and prints.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from aromni.cli.common import load_model, positive_float, positive_int, resolve_model
from aromni.errors import InputError
from aromni.evaluation.context import SuiteSettings
from aromni.evaluation.datasets import LAYOUTS
from aromni.evaluation.report import write_report
from aromni.evaluation.runner import SuiteRun, run_suite
from aromni.evaluation.scoring import Judges, JudgeSpec
from aromni.evaluation.sharding import Shard, end_process_group, init_process_group, shard_from_env
from aromni.evaluation.suites import SUITES, Suite, parse_suites
from aromni.inference.omni import OmniModel
from aromni.omnivivo.api import VivoPipeline
from aromni.toyworld.demo import find_vivo
from aromni.utils.io import JSONValue

#: The dataset flag of each layout.
DATA_FLAGS = {"coco": "coco", "librispeech": "librispeech", "vctk": "vctk", "libritts": "libritts"}


def suite_arg(text: str) -> tuple[str, ...]:
    try:
        return parse_suites(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("public suites (docs/eval.md)")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="run directory: per-sample records (rerun with the same --out to resume), metrics, report")
    for layout, flag in DATA_FLAGS.items():
        g.add_argument(f"--{flag}", default=None, metavar="DIR", help=f"{layout} dataset: {LAYOUTS[layout]}")
    g.add_argument("--vq", default=None, metavar="DIR", help="--suite vivo: the export's LlamaGen VQ")
    g.add_argument("--transcriber", default=None, metavar="DIR", help="local Whisper model directory (TTS, vivo)")
    g.add_argument("--clip", default=None, metavar="DIR", help="local CLIP model directory (coco-t2i)")
    g.add_argument("--inception", default=None, metavar="FILE", help="FID Inception weights (.pth) (vivo)")
    g.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS on the TTS suites (needs speechmos)")
    g.add_argument("--no-ground-truth", action="store_true",
                   help="skip Whisper on the datasets' own recordings (the TTS tables' ground-truth row)")
    g.add_argument("--force-speech", action="store_true",
                   help="end TTS prompts with <boa> (not the official prompt; for weakly trained bundles)")
    g.add_argument("--instruction", default=None, metavar="TEXT",
                   help="the prompt's instruction for every task of the run (default: each task's own in the "
                        "bundle's prompt style, e.g. 'Describe the image.')")
    g.add_argument("--save-media", action="store_true",
                   help="keep the generated images and speech (OUT/<model>/<suite>/media/<id>.png / .wav)")
    g.add_argument("--text-tokens", type=positive_int, default=64, help="cap on caption/transcript tokens (64)")
    g.add_argument("--merge-timeout", type=positive_float, default=24 * 3600.0, metavar="SECONDS",
                   help="how long rank 0 waits for the other shards (default: 24 h)")


def _settings(args: argparse.Namespace) -> SuiteSettings:
    return SuiteSettings(seed=args.seed, limit=args.limit, batch_size=args.batch_size, text_tokens=args.text_tokens,
                         force_speech=args.force_speech, ground_truth=not args.no_ground_truth,
                         dnsmos=not args.no_dnsmos, instruction=args.instruction)


def _check(args: argparse.Namespace, suites: list[Suite], judges: Judges) -> None:
    """Flags, judges and datasets, before any model loads."""
    toy_only = [f for f, v in (("--world", args.world), ("--report", args.report), ("--tasks", args.tasks),
                                ("--runs", args.runs)) if v]
    if toy_only:
        raise InputError(f"{', '.join(toy_only)} belong to --suite toy", "the public suites write to --out DIR")
    if not args.out:
        raise InputError("--out DIR is required for the public suites",
                         "records, metrics and the report go there; rerun with the same --out to resume")
    for s in suites:
        judges.require(s.judges, s.name)
        s.read(getattr(args, DATA_FLAGS[s.dataset]))  # one-line error naming the layout
    if not args.no_dnsmos and any(s.speech_out for s in suites) and \
            importlib.util.find_spec("speechmos") is None:
        raise InputError("DNSMOS needs the speechmos package", "pip install speechmos, or pass --no-dnsmos")
    if any(s.model == "vivo" for s in suites) and args.vq is None and args.model != "toy":
        raise InputError("--suite vivo needs --vq DIR (the export's LlamaGen VQ)", "or --model toy for the toy export")


def _device(args: argparse.Namespace, shard: Shard) -> None:
    """Under torchrun on CUDA each rank takes its own GPU (``LOCAL_RANK``)."""
    if shard.world > 1 and str(args.device) == "cuda" and "LOCAL_RANK" in os.environ:
        args.device = f"cuda:{int(os.environ['LOCAL_RANK'])}"


def _config_hash(path: Path) -> str | None:
    cfg = Path(path) / "config.json"
    return hashlib.sha256(cfg.read_bytes()).hexdigest()[:16] if cfg.is_file() else None


def _omni_info(model: OmniModel, path: Path) -> dict[str, JSONValue]:
    return {"kind": "AR-Omni bundle", "path": str(Path(path).resolve()), "config_sha256": _config_hash(path),
            "parameters": sum(p.numel() for p in model.bundle.decoder.parameters()),
            "prompt_style": model.style.name,
            "speech_tokens_per_second": float(model.speech.frame_rate) if model.speech is not None else None}


def _models(args: argparse.Namespace, suites: list[Suite], ablation: list[tuple[str, Path]]
            ) -> list[tuple[str, Callable[[], tuple[OmniModel | VivoPipeline, dict[str, JSONValue]]]]]:
    """``[(name, loader)]``: ``--model`` first, then each ablation bundle; loaded one at a time."""
    if suites[0].model == "vivo":
        toy = find_vivo() if args.model in (None, "toy") else None
        export, vq = (toy if toy is not None else (args.model, args.vq))
        if export is None:
            raise InputError("--suite vivo needs --model EXPORT", "the omnivivo/ directory of an export, or toy")

        def vivo(path: str | Path, vq: str | Path = vq) -> Callable[[], tuple[VivoPipeline, dict[str, JSONValue]]]:
            def load() -> tuple[VivoPipeline, dict[str, JSONValue]]:
                pipe = VivoPipeline.load(path, vq, device=str(args.device))
                return pipe, {"kind": "OmniVIVO export", "path": str(Path(path).resolve()),
                              "vq": str(Path(vq).resolve()), "config_sha256": _config_hash(Path(path))}
            return load
        name = args.name or ("toy" if toy is not None else Path(export).name)
        return [(name, vivo(export)), *((n, vivo(p)) for n, p in ablation)]

    def main() -> tuple[OmniModel, dict[str, JSONValue]]:
        model = load_model(args, toy_default=False)
        return model, _omni_info(model, args.model_path)

    def other(path: Path) -> Callable[[], tuple[OmniModel, dict[str, JSONValue]]]:
        def load() -> tuple[OmniModel, dict[str, JSONValue]]:
            model = OmniModel.load(path, device=args.device, dtype=args.dtype)
            return model, _omni_info(model, path)
        return load
    first = args.name or ("toy" if args.model == "toy" else resolve_model(args.model, toy_default=False).name)
    return [(first, main), *((n, other(p)) for n, p in ablation)]


def run(args: argparse.Namespace, parse_ablation: Callable[[list[str]], list[tuple[str, Path]]]) -> int:
    suites = [SUITES[n] for n in args.suite]
    shard = shard_from_env()
    _device(args, shard)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = JudgeSpec(args.transcriber, args.clip, args.inception, dnsmos=not args.no_dnsmos,
                     device=str(args.device), batch_size=args.batch_size)
    judges = Judges(spec)
    _check(args, suites, judges)
    ablation = parse_ablation(args.ablation)
    names = [args.name, *(n for n, _ in ablation)]
    if len({n for n in names if n}) < len([n for n in names if n]):
        raise InputError(f"model names repeat: {', '.join(n for n in names if n)}", "give each --ablation its own NAME")
    log = (lambda s: None) if args.quiet or not shard.is_main else (lambda s: print(s, file=sys.stderr))
    settings = _settings(args)
    out = Path(args.out)
    started = init_process_group(shard, args.merge_timeout)
    results = []
    try:
        for name, load in _models(args, suites, ablation):
            model, info = load()
            for s in suites:
                run_ = SuiteRun(s, getattr(args, DATA_FLAGS[s.dataset]), out / name / s.name, name, info, settings,
                                progress=not args.quiet, merge_timeout_s=args.merge_timeout,
                                save_media=args.save_media)
                r = run_suite(run_, model, judges, shard, log=log)
                if r is not None:
                    results.append(r)
    finally:
        end_process_group(started)
    if not shard.is_main:
        return 0
    md = write_report(results, out, command=" ".join(["aromni", *sys.argv[1:]]))
    log(f"wrote {md}")
    if args.json:
        print(json.dumps({"results": results}, indent=2))
    else:
        for r in results:
            m = {k: v for k, v in r["metrics"].items() if not isinstance(v, (dict, list))}
            print(f"{r['model_name']} / {r['suite']}: " + ", ".join(f"{k}={_short(v)}" for k, v in m.items()))
    return 0


def _short(v: JSONValue) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
