"""``aromni toyworld``: build the procedural toy world, train and score its judges, run the whole recipe.

    aromni toyworld build --out DIR [--size smoke|small|full] [--seed N] [--workers N] [--version 1|2]
    aromni toyworld judges train --out DIR [--only speech|image] [--speech-units chars|phonemes] [--speech-init DIR]
    aromni toyworld judges eval --world DIR [--judges DIR] [--split test]
    aromni toyworld judges speech-report [--judges DIR] [--bundle DIR] [--json FILE]
    aromni toyworld train --config configs/toyworld/full.yaml --out runs/toy [section.key=value ...]
    aromni toyworld ablate --config configs/toyworld/full.yaml --out runs/toy
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from aromni.cli.common import check_output_path, positive_int, seed_int
from aromni.toyworld.attributes import WORLD_VERSION, WORLD_VERSIONS
from aromni.toyworld.build import build_world
from aromni.toyworld.judges.measure import measure_judges, measure_speech_heldout
from aromni.toyworld.judges.speech import SpeechJudge
from aromni.toyworld.recipe import Recipe, RecipeConfig
from aromni.toyworld.speech_manifest import write_speech_manifests
from aromni.training.recipes.judge_image import ImageTrainConfig, train_image_judge
from aromni.training.recipes.judge_speech import SpeechTrainConfig, train_speech_judge
from aromni.utils.io import JSONValue, atomic_write_text


def _build(args: argparse.Namespace) -> int:
    manifest = build_world(args.out, size=args.size, seed=args.seed, workers=args.workers,
                           overwrite=args.overwrite, progress=not args.quiet, version=args.world_version)
    summary = {k: manifest[k] for k in ("version", "size", "seed", "images", "speech_clips", "speech_hours",
                                        "build_seconds")}
    print(json.dumps({"out": str(args.out), **summary}))
    return 0


def _speech_manifest(args: argparse.Namespace) -> int:
    counts = write_speech_manifests(args.world, args.out, overwrite=args.overwrite)
    print(", ".join(f"{args.out}/{name}: {n} lines" for name, n in counts.items()))
    return 0


def _judges_train(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    results = {}
    if args.only in (None, "image"):
        results["image"] = train_image_judge(os.path.join(args.out, "image"),
                                             ImageTrainConfig(steps=args.image_steps, seed=args.seed),
                                             progress=not args.quiet)
    if args.only in (None, "speech"):  # needs no world: it synthesises its own training speech
        cfg = SpeechTrainConfig(steps=args.speech_steps, pool_clips=args.speech_clips, workers=args.workers,
                                units=args.speech_units, init_from=args.speech_init or "", seed=args.seed)
        results["speech"] = train_speech_judge(os.path.join(args.out, "speech"), cfg, progress=not args.quiet)
    print(json.dumps(results))
    return 0


def _judges_speech_report(args: argparse.Namespace) -> int:
    if args.json:
        check_output_path(args.json, args.overwrite, (".json",))
    torch.set_num_threads(args.threads)
    report = measure_speech_heldout(SpeechJudge.load(args.judges), n_random=args.random_clips,
                                    n_grammar=args.grammar_clips, bundle=args.bundle)
    return _print_report(report, args.json)


def _judges_eval(args: argparse.Namespace) -> int:
    if args.json:
        check_output_path(args.json, args.overwrite, (".json",))
    torch.set_num_threads(args.threads)
    report = measure_judges(args.world, args.judges, args.split)
    return _print_report(report, args.json)


def _print_report(report: dict[str, JSONValue], json_path: str | None) -> int:
    """Print a judge report as JSON and, with ``--json``, also write it there (checked before measuring)."""
    text = json.dumps(report, indent=2)
    if json_path:
        atomic_write_text(json_path, text + "\n")
    print(text)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    tw = subparsers.add_parser("toyworld", help="procedural tri-modal toy world: build it, train/score its judges, run the recipe and its ablations")
    sub = tw.add_subparsers(dest="toyworld_command", metavar="SUBCOMMAND")
    tw.set_defaults(func=lambda a: (tw.print_help(), 0)[1])

    b = sub.add_parser("build", help="generate a world directory (images, speech, dialog records, manifest)")
    b.add_argument("--out", required=True, help="world directory to create")
    b.add_argument("--size", default="small", choices=["smoke", "small", "full"])
    b.add_argument("--seed", type=seed_int, default=0)
    # dest differs from the flag: `aromni --version` already owns args.version.
    b.add_argument("--version", dest="world_version", type=int, choices=WORLD_VERSIONS,
                   default=WORLD_VERSION,
                   help="world version: 1 is the closed-grammar world of the shipped bundle, 2 (default) adds "
                        "an open vocabulary and held-out words, phrasings, attribute pairs and voices")
    b.add_argument("--workers", type=positive_int, default=min(2, os.cpu_count() or 1), help="worker processes")
    b.add_argument("--overwrite", action="store_true", help="replace an existing directory or unfinished build")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)

    m = sub.add_parser("speech-manifest", help="the world's spoken answers as {text, audio} JSONL "
                       "(OUT/train.jsonl, OUT/val.jsonl): OmniVIVO's speech-stage data")
    m.add_argument("--world", required=True, help="a built world directory")
    m.add_argument("--out", required=True, help="directory for train.jsonl and val.jsonl")
    m.add_argument("--overwrite", action="store_true", help="replace existing manifests")
    m.set_defaults(func=_speech_manifest)

    j = sub.add_parser("judges", help="train or score the speech and image judges")
    jsub = j.add_subparsers(dest="judges_command", metavar="ACTION")
    j.set_defaults(func=lambda a: (j.print_help(), 0)[1])

    t = jsub.add_parser("train", help="train the judges (resumable; no world needed); writes OUT/speech and "
                                      "OUT/image")
    t.add_argument("--out", required=True)
    t.add_argument("--only", choices=["speech", "image"], default=None)
    t.add_argument("--speech-steps", type=positive_int, default=SpeechTrainConfig.steps)
    t.add_argument("--speech-clips", type=positive_int, default=SpeechTrainConfig.pool_clips,
                   help="clips the speech judge synthesises for training (cached in OUT/speech/pool)")
    t.add_argument("--workers", type=positive_int, default=min(2, os.cpu_count() or 1),
                   help="processes synthesising the speech judge's clips")
    t.add_argument("--speech-units", choices=["chars", "phonemes"], default=SpeechTrainConfig.units,
                   help="the speech judge's output symbols: letters, or espeak-ng phonemes mapped to words")
    t.add_argument("--speech-init", default=None,
                   help="start the speech judge from this saved judge (its matching tensors)")
    t.add_argument("--image-steps", type=positive_int, default=1000)
    t.add_argument("--seed", type=seed_int, default=0)
    t.add_argument("--threads", type=positive_int, default=1, help="torch threads (the machine is shared)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_judges_train)

    e = jsub.add_parser("eval", help="judge WER and image accuracy on a world's ground truth")
    e.add_argument("--world", required=True)
    e.add_argument("--judges", default=None, help="directory with speech/ and image/ (default: shipped judges)")
    e.add_argument("--split", default="test", choices=["train", "validation", "test"])
    e.add_argument("--json", default=None, help="also write the report here")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    e.add_argument("--threads", type=positive_int, default=1)
    e.set_defaults(func=_judges_eval)

    sr = jsub.add_parser("speech-report", help="speech judge WER (raw and lexicon-snapped) on fresh held-out "
                                               "speakers, the Klatt family, flite, the assistant voice and the "
                                               "codec round trip")
    sr.add_argument("--judges", default=None, help="a speech judge directory (default: the shipped judge)")
    sr.add_argument("--bundle", default=None, help="bundle whose speech codec gives the round trip (default: "
                                                   "the shipped toy bundle)")
    sr.add_argument("--random-clips", type=positive_int, default=120, help="random word sequences per slice")
    sr.add_argument("--grammar-clips", type=positive_int, default=60, help="grammar sentences per slice")
    sr.add_argument("--json", default=None, help="also write the report here")
    sr.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    sr.add_argument("--threads", type=positive_int, default=1)
    sr.set_defaults(func=_judges_speech_report)

    r = sub.add_parser("train", help="the whole recipe: world -> tokenizers -> shards -> pretrain "
                       "(image phase, then the mixture) -> SFT -> eval")
    r.add_argument("--config", required=True, help="recipe YAML (configs/toyworld/full.yaml or smoke.yaml)")
    r.add_argument("--out", required=True, help="run directory; re-running continues an interrupted recipe")
    r.add_argument("--stop-after", default=None, help="stop after this stage (world, text, tokenizers, shards, "
                   "pretrain_images, pretrain, sft, bundle, eval)")
    r.add_argument("overrides", nargs="*", help="section.key=value changes to the recipe YAML")
    r.set_defaults(func=_recipe)

    a = sub.add_parser("ablate", help="the paper's Table 7 on a finished recipe run: stage-1 variants at equal steps")
    a.add_argument("--config", required=True, help="the recipe YAML of the run (with an `ablations` section)")
    a.add_argument("--out", required=True, help="the run directory of `aromni toyworld train`")
    a.add_argument("overrides", nargs="*", help="section.key=value changes to the recipe YAML")
    a.set_defaults(func=_ablate)


def _recipe(args: argparse.Namespace) -> int:
    cfg = RecipeConfig.from_yaml(args.config, args.overrides)
    summary = Recipe(cfg, args.out, stop_after=args.stop_after).run()
    print(json.dumps(summary, indent=2))
    return 0


def _ablate(args: argparse.Namespace) -> int:
    Recipe(RecipeConfig.from_yaml(args.config, args.overrides), args.out).ablate()
    return 0
