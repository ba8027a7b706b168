"""``aromni eval``: score a bundle on a suite. ``--suite toy``: every task on a toy world's held-out split, read
by the world's judges (``docs/eval.md``). ``--suite coco-caption,coco-t2i,librispeech,vctk-tts,libritts-tts`` (an
AR-Omni bundle) or ``--suite vivo`` (an OmniVIVO export): the papers' public benchmarks on local datasets, judged
by local Whisper / CLIP / Inception models, sharded under torchrun (``docs/eval.md``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from aromni.cli.common import add_model_args, load_model, positive_int, seed_int
from aromni.errors import InputError
from aromni.evaluation import cli as eval_public
from aromni.inference.omni import OmniModel
from aromni.toyworld.evaluation import TASKS, SuiteConfig, SuiteResult, run_suite
from aromni.toyworld.report import ablation_rows, find_runs, write_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a bundle (toy world: ASR, TTS, captions, T2I, S→I, VQA, chat, latency)")
    add_model_args(p, toy_default=False)
    p.add_argument("--suite", default="toy", type=eval_public.suite_arg, metavar="SUITE[,SUITE...]",
                   help="toy (default), or public suites: coco-caption, coco-t2i, librispeech, vctk-tts, "
                        "libritts-tts, vivo (comma-separated; vivo alone)")
    p.add_argument("--world", required=False, help="toy world directory (`aromni toyworld build`)")
    p.add_argument("--split", default="test", help="world split (default: test)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="samples per task (default: per-task defaults sized for a few minutes on 2 cores)")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the suite's tasks (default: all)")
    p.add_argument("--seed", type=seed_int, default=0, help="base seed of the sampled tasks (default: 0)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="prompts per generation batch (default: 8)")
    p.add_argument("--judges", default=None, help="judge directory with speech/ and image/ (default: shipped)")
    p.add_argument("--report", default=None, metavar="DIR", help="write report.md, figures, metrics.json here")
    p.add_argument("--runs", default=None, metavar="DIR",
                   help="training run directory (or a directory of runs) whose metrics.jsonl give loss curves")
    p.add_argument("--name", default=None, help="name of --model in the ablation table (default: its folder)")
    p.add_argument("--ablation", nargs="+", default=[], metavar="NAME=BUNDLE",
                   help="more bundles to evaluate the same way; one row each in the report's ablation table")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report directory")
    p.add_argument("--json", action="store_true", help="print every metric as one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-task lines")
    eval_public.add_args(p)
    p.set_defaults(func=run)


def _parse_ablation(items: list[str]) -> list[tuple[str, Path]]:
    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--ablation {item!r}: expected NAME=BUNDLE", "e.g. --ablation no-perc=runs/no_perc/bundle")
        if not (Path(path) / "config.json").is_file():
            raise InputError(f"--ablation {name}: {path} is not a bundle (no config.json)")
        out.append((name, Path(path)))
    return out


def run(args: argparse.Namespace) -> int:
    if args.suite != ("toy",):
        return eval_public.run(args, parse_ablation=_parse_ablation)
    if not args.world:
        raise InputError("--world is required for the toy suite", "build one with `aromni toyworld build --out DIR`")
    if not (Path(args.world) / "manifest.json").is_file():
        raise InputError(f"{args.world}: not a toy world (no manifest.json)", "pass the directory `toyworld build` made")
    report = Path(args.report) if args.report else None
    if report is not None and report.exists() and any(report.iterdir()) and not args.overwrite:
        raise InputError(f"{report} already exists and is not empty", "choose another --report or pass --overwrite")
    ablation = _parse_ablation(args.ablation)
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip()) if args.tasks else TASKS
    model = load_model(args, toy_default=False)
    cfg = SuiteConfig(split=args.split, limits=args.limit, tasks=tasks, seed=args.seed, batch_size=args.batch_size,
                      judges=args.judges, progress=not args.quiet)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
    log(f"evaluating {args.model_path} on {args.world} ({args.split})")
    result = run_suite(model, args.world, cfg, log=log)
    others = []
    for name, path in ablation:
        log(f"ablation {name}: {path}")
        other = OmniModel.load(path, device=args.device, dtype=args.dtype)
        others.append((name, run_suite(other, args.world, cfg, log=log)))
    if report is not None:
        main_name = args.name or Path(args.model_path).name
        rows = [(main_name, result), *others] if others else []
        md = write_report(result, report, runs=find_runs(args.model_path, args.runs), ablation=rows,
                          overwrite=args.overwrite)
        log(f"wrote {md}")
    if args.json:
        data = result.to_dict()
        if others:
            data["ablation"] = ablation_rows([(args.name or Path(args.model_path).name, result), *others])
        print(json.dumps(data, indent=2))
    else:
        _print_table(result)
    return 0


def _print_table(result: SuiteResult) -> None:
    rows = result.rows
    width = max(len(r["task"]) for r in rows)
    mwidth = max(len(r["metric"]) for r in rows)
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            print(f"\n[{section}]")
        verdict = {True: "pass", False: "FAIL", None: ""}[r["pass"]]
        note = f"  ({r['note']})" if r["note"] else ""
        print(f"{r['task']:<{width}}  {r['metric']:<{mwidth}}  {r['shown']:>9}  {r['target']:>9}  {verdict:<4}"
              f"  n={r['n'] if r['n'] is not None else '-'}{note}")
    d = result.to_dict()
    print(f"\ntargets met: {d['targets_met']} of {d['targets_checked']}; "
          f"{result.info['seconds']['total']:.0f} s on {result.info['device']} ({result.info['threads']} threads)")
