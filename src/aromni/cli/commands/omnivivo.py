"""``aromni omnivivo train``: OmniVIVO's speech stage (LoRA + speech branch on a frozen t2i backbone);
``aromni omnivivo generate``: a tri-modal (caption, image, narration) dataset from an export;
``aromni omnivivo eval``: a toy export measured on a toy world's test split;
``aromni omnivivo ablate``: the paper's Table 1 (branch depth x LoRA) on the toy world."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from aromni.cli import common
from aromni.omnivivo.dataset_builder import TABLE, DatasetSettings, build_dataset, read_prompts
from aromni.omnivivo.depth_ablation import PAPER_DEPTHS, AblationSettings, run_ablation
from aromni.omnivivo.recognizers import RECOGNIZER_NAMES, load_recognizer
from aromni.omnivivo.t2i_generate import T2ISampling
from aromni.omnivivo.toy_eval import VivoEvalSettings, evaluate_vivo
from aromni.training.recipes.omnivivo import train_omnivivo
from aromni.training.recipes.omnivivo_config import load_train_config, resume_config


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("omnivivo", help="OmniVIVO: train the speech path on a frozen t2i backbone")
    sub = p.add_subparsers(dest="omnivivo_command", metavar="SUBCOMMAND", required=True)
    t = sub.add_parser(
        "train", help="train LoRA + the speech branch on (text, audio) pairs",
        description="Train OmniVIVO's speech stage; writes OUT/{checkpoints/,metrics.jsonl,speech_codes/,"
                    "averaged.safetensors,omnivivo/,summary.json}. Settings: --config YAML and/or key=value "
                    "(e.g. backbone=DIR conditioner=DIR speech_tokenizer=DIR train_manifest=train.jsonl "
                    "steps=2000 vivo.branch_layers=2 vivo.lora.r=8); see configs/omnivivo/toy_speech.yaml.")
    common.add_train_run_args(t, settings_help="training settings (paper defaults: lr=1e-4 batch_size=14 ...)")
    t.set_defaults(func=_train)
    _register_generate(sub)
    _register_eval(sub)
    _register_ablate(sub)


def _train(args: argparse.Namespace) -> int:
    common.check_train_run_args(args)
    cfg = resume_config(args.out, args.overrides) if args.resume else load_train_config(args.config, args.overrides)
    summary = train_omnivivo(cfg, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    print(json.dumps(summary))
    return 0


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help="the OmniVIVO export (OUT/omnivivo of training)")
    p.add_argument("--vq", required=True, type=Path, help="the image tokenizer the backbone draws for")


def _register_generate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``generate`` to the ``aromni omnivivo`` subcommands."""
    g = sub.add_parser("generate", help="build a tri-modal (caption, image, narration) dataset from an export",
                       description="Draw and speak every prompt of --prompts; writes OUT/{images/,audio/,rows.jsonl,"
                                   "dataset.parquet,manifest.json}, flags rows by duration and recognizer WER, and "
                                   "resumes an earlier run in OUT.")
    _add_model_args(g)
    g.add_argument("--prompts", required=True, type=Path, help="captions: one per line, or JSONL {\"text\": ...}")
    g.add_argument("--out", required=True, type=Path, help="output directory (new, empty, or an earlier run)")
    g.add_argument("--recognizer", choices=RECOGNIZER_NAMES, default="toy-judge",
                   help="speech recognizer for the WER filter (default toy-judge; none: no transcripts)")
    g.add_argument("--max-wer", type=common.finite_float, default=0.2, help="flag rows above this WER (default 0.2)")
    g.add_argument("--min-seconds", type=common.finite_float, default=0.3, help="flag shorter audio (default 0.3)")
    g.add_argument("--max-seconds", type=common.finite_float, default=30.0, help="flag longer audio (default 30)")
    g.add_argument("--seed", type=common.seed_int, default=0, help="image seed of the first prompt (+1 per prompt)")
    g.add_argument("--limit", type=common.positive_int, default=None, help="only the first N prompts")
    g.add_argument("--batch-size", type=common.positive_int, default=8, help="prompts per decoding batch (8)")
    g.add_argument("--cfg-scale", type=common.finite_float, default=T2ISampling.cfg_scale,
                   help=f"image classifier-free guidance scale (default {T2ISampling.cfg_scale})")
    g.add_argument("--image-top-k", type=common.nonneg_int, default=T2ISampling.top_k,
                   help=f"image top-k, 0 = all codes (default {T2ISampling.top_k})")
    g.add_argument("--device", default="cpu", type=common.device_arg, help="cpu, cuda, cuda:1, mps (default cpu)")
    g.add_argument("--threads", type=common.positive_int, default=None, help="CPU threads for torch")
    common.add_output_args(g)
    g.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    settings = DatasetSettings(
        model=args.model, vq=args.vq, prompts=args.prompts, out=args.out, max_wer=args.max_wer,
        min_seconds=args.min_seconds, max_seconds=args.max_seconds, seed=args.seed, limit=args.limit,
        batch_size=args.batch_size, image=T2ISampling(cfg_scale=args.cfg_scale, top_k=args.image_top_k),
        device=str(args.device))
    read_prompts(settings.prompts)  # bad prompts fail before a model or judge is loaded
    if args.threads:
        torch.set_num_threads(args.threads)
    manifest = build_dataset(settings, recognizer=load_recognizer(args.recognizer), progress=not args.json)
    c = manifest["counts"]
    common.emit(args, {**manifest, "out": str(args.out)},
                f"wrote {args.out / TABLE}: {c['rows']} rows ({c['generated']} new, {c['resumed']} resumed), "
                f"{c['kept']} kept; flagged {', '.join(f'{k} {v}' for k, v in c['flagged'].items())}")
    return 0


def _register_eval(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``eval`` to the ``aromni omnivivo`` subcommands."""
    d = VivoEvalSettings()
    e = sub.add_parser("eval", help="measure a toy export on a toy world's test split",
                       description="Images (judge accuracy, bit-identity with the frozen backbone, an "
                                   "Inception-Score analogue), narration/image coherence, TTS judge WER on "
                                   "held-out sentences and DNSMOS; writes OUT/{report.json,report.md,grid.png,audio/}.")
    _add_model_args(e)
    e.add_argument("--world", required=True, type=Path, help="the toy world the model was trained on")
    e.add_argument("--out", required=True, type=Path, help="directory for the report")
    e.add_argument("--images", type=common.nonneg_int, default=d.images, help=f"caption prompts ({d.images})")
    e.add_argument("--sentences", type=common.nonneg_int, default=d.sentences,
                   help=f"held-out sentences spoken ({d.sentences})")
    e.add_argument("--dnsmos", type=common.nonneg_int, default=d.dnsmos,
                   help=f"clips per source for DNSMOS, 0 = skip (default {d.dnsmos}; needs the mos extra)")
    e.add_argument("--aromni-bundle", default=d.aromni_bundle,
                   help="AR-Omni bundle whose TTS DNSMOS scores beside (default toy; 'none' to skip)")
    e.add_argument("--batch-size", type=common.positive_int, default=d.batch_size, help="prompts per loop")
    e.add_argument("--cfg-scale", type=common.finite_float, default=d.cfg_scale,
                   help=f"image guidance scale (default {d.cfg_scale})")
    e.add_argument("--seed", type=common.seed_int, default=d.seed, help="image seed of the first prompt")
    e.add_argument("--threads", type=common.positive_int, default=None, help="CPU threads for torch")
    common.add_output_args(e)
    e.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    bundle = None if args.aromni_bundle in (None, "", "none") else args.aromni_bundle
    settings = VivoEvalSettings(images=args.images, sentences=args.sentences, dnsmos=args.dnsmos,
                                batch_size=args.batch_size, cfg_scale=args.cfg_scale, seed=args.seed,
                                aromni_bundle=bundle)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = evaluate_vivo(args.model, args.vq, args.world, args.out, settings)
    common.emit(args, report, (args.out / "report.md").read_text())
    return 0


def _register_ablate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ablate`` to the ``aromni omnivivo`` subcommands."""
    a = sub.add_parser("ablate", help="the paper's Table 1: speech-branch depth x LoRA on/off",
                       description="One speech-stage run per (depth, LoRA) cell from --config and key=value "
                                   "settings, each measured by its last validation loss and the speech judge's "
                                   "WER/CER on held-out sentences; writes OUT/<cell>/ and OUT/table.{json,md}. "
                                   "Finished cells are read back and interrupted ones resumed.")
    a.add_argument("overrides", nargs="*", metavar="key=value", help="settings shared by every cell (e.g. steps=800)")
    a.add_argument("--config", type=Path, default=None,
                   help="the speech stage's YAML (configs/omnivivo/toy_speech.yaml)")
    a.add_argument("--world", required=True, type=Path, help="the toy world (its TTS test sentences are spoken)")
    a.add_argument("--out", required=True, type=Path, help="directory for the cells and the table")
    a.add_argument("--depths", type=common.positive_int, nargs="+", default=list(PAPER_DEPTHS),
                   help="branch depths (default 2 4 6 8 10)")
    a.add_argument("--lora", choices=("both", "on", "off"), default="both", help="LoRA options per depth (both)")
    a.add_argument("--sentences", type=common.positive_int, default=AblationSettings.sentences,
                   help=f"held-out sentences per cell (default {AblationSettings.sentences})")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=_ablate)


def _ablate(args: argparse.Namespace) -> int:
    lora = {"both": (True, False), "on": (True,), "off": (False,)}[args.lora]
    settings = AblationSettings(depths=tuple(args.depths), lora=lora, sentences=args.sentences)
    rows = run_ablation(args.config, args.overrides, args.world, args.out, settings, progress=not args.quiet)
    print((args.out / "table.md").read_text() if rows else "no cells")
    return 0
