"""Flags every task command shares (model, device, sampling, CFG, seed, output) and their handling."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from aromni.errors import ConfigError, InputError


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=os.environ.get("AROMNI_MODEL"),
                   help="bundle directory (default: $AROMNI_MODEL)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    g.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="weights dtype (default: as stored)")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's; 1 is fastest for small models on busy machines)")


def add_sampling_args(p: argparse.ArgumentParser, *, images: bool = True) -> None:
    g = p.add_argument_group("decoding (defaults: the bundle's, then the official task settings)")
    g.add_argument("--seed", type=int, default=None, help="random seed (reproducible sampling)")
    g.add_argument("--max-new-tokens", type=int, default=None, help="generated tokens at most")
    g.add_argument("--temperature", type=float, default=None, help="text/speech temperature (official 1.2)")
    g.add_argument("--top-p", type=float, default=None, help="text/speech nucleus mass (official 0.96)")
    g.add_argument("--top-k", type=int, default=None, help="text/speech top-k, 0 = off (default)")
    g.add_argument("--repetition-penalty", type=float, default=None, help="text/speech penalty (official 1.2)")
    g.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=None,
                   help="greedy text/speech decoding (--no-greedy samples; default: the task's)")
    if images:
        g.add_argument("--image-temperature", type=float, default=None, help="image temperature (official 1.0)")
        g.add_argument("--image-top-p", type=float, default=None, help="image nucleus mass (official 0.96)")
        g.add_argument("--image-top-k", type=int, default=None, help="image top-k, 0 = off (default)")
        g.add_argument("--image-greedy", action="store_true", default=None, help="argmax image codes")
        g.add_argument("--guidance-scale-text", type=float, default=None, help="CFG text scale (official 3.07)")
        g.add_argument("--guidance-scale-image", type=float, default=None,
                       help="CFG image scale (official 1.15; t2i 1.32)")
        g.add_argument("--no-cfg", action="store_true", help="no classifier-free guidance (one row per image)")


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one machine-readable JSON object")


def add_task_args(p: argparse.ArgumentParser, *, images: bool = True) -> None:
    """Model, decoding and output flags of a task command."""
    add_model_args(p)
    add_sampling_args(p, images=images)
    add_output_args(p)


def add_train_run_args(p: argparse.ArgumentParser, *, checkpoint: str, settings_help: str) -> None:
    """The run-directory flags of a resumable trainer (``codec train``, ``vqgan train``): ``--out``,
    ``--config``, ``--resume`` (from ``OUT/<checkpoint>``), ``--overwrite``, ``--quiet`` and ``key=value``
    settings. Check them with :func:`check_train_run_args`."""
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--config", type=Path, help="YAML file of training settings")
    p.add_argument("--resume", action="store_true", help=f"continue the run in OUT from OUT/{checkpoint}")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if OUT is not empty")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help=settings_help)


def check_train_run_args(args: argparse.Namespace) -> None:
    """Refuse ``--config`` with ``--resume``: a resumed run takes its settings from its checkpoint."""
    if args.resume and args.config is not None:
        raise ConfigError("--config cannot be combined with --resume",
                          "the run's settings come from its checkpoint; pass changes as key=value (steps=N)")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Decoding overrides from the flags that were given."""
    text = {"temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k,
            "repetition_penalty": args.repetition_penalty, "greedy": args.greedy}
    out: dict[str, Any] = {"text": {k: v for k, v in text.items() if v is not None}}
    image = {"temperature": getattr(args, "image_temperature", None), "top_p": getattr(args, "image_top_p", None),
             "top_k": getattr(args, "image_top_k", None), "greedy": getattr(args, "image_greedy", None),
             "guidance_scale_text": getattr(args, "guidance_scale_text", None),
             "guidance_scale_image": getattr(args, "guidance_scale_image", None)}
    out["image"] = {k: v for k, v in image.items() if v is not None}
    if getattr(args, "no_cfg", False):
        out["image"]["cfg"] = False
    for key in ("seed", "max_new_tokens"):
        if getattr(args, key, None) is not None:
            out[key] = getattr(args, key)
    return {k: v for k, v in out.items() if v != {}}


def load_model(args: argparse.Namespace) -> Any:
    if not args.model:
        raise InputError("no model given", "pass --model BUNDLE or set AROMNI_MODEL")
    from aromni.inference.omni import OmniModel

    if getattr(args, "threads", None):
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    return OmniModel.load(args.model, device=args.device, dtype=args.dtype)


def check_output_path(path: str | Path, overwrite: bool, suffixes: tuple[str, ...]) -> Path:
    """Refuse to overwrite silently and reject a wrong extension before any compute is spent."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{path}: expected a {' or '.join(suffixes)} file name")
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists", "choose another path or pass --overwrite")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def emit(args: argparse.Namespace, payload: dict[str, Any], human: str) -> None:
    """Print ``payload`` as JSON with ``--json``, else the human-readable line."""
    if getattr(args, "json", False):
        print(json.dumps(payload, ensure_ascii=False, default=_jsonable))
    else:
        print(human)
    sys.stdout.flush()


def _jsonable(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def rounded(d: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in d.items()}
