"""Flags every task command shares (model, device, sampling, CFG, seed, output) and their handling.

Flag values are checked by argparse ``type`` functions (:func:`positive_int`, :func:`finite_float`,
:func:`device_arg`, ...), so a bad value is refused before any work with one ``error: ...`` line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO, TypeVar

import torch

from aromni.bundle import NAMED_BUNDLES, resolve_bundle
from aromni.errors import ConfigError, InputError
from aromni.inference.omni import OmniModel
from aromni.inference.options import DecodeOptions, task_options
from aromni.models.quantize import SCHEMES
from aromni.utils.device import resolve_device
from aromni.utils.io import JSONValue
from aromni.vocab.tasks import Task

#: The stderr line of a task command that fell back to the shipped toy bundle.
TOY_NOTE = "using the shipped toy bundle (pass --model BUNDLE or set AROMNI_MODEL)"


# ------------------------------------------------------------------------------------------------ flag types
V = TypeVar("V")


def _typed(check: Callable[[str], V]) -> Callable[[str], V]:
    """An argparse type from ``check(text) -> value``, which raises InputError/ValueError with the message."""
    def parse(text: str) -> V:
        try:
            return check(text)
        except (InputError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = check.__name__
    return parse


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected {what}, got {text!r}") from None


def _float(text: str, what: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"expected {what}, got {text!r} (not a finite number)")
    return x


def _int_at_least(text: str, low: int) -> int:
    n = _int(text, f"an integer >= {low}")
    if n < low:
        raise ValueError(f"expected an integer >= {low}, got {n}")
    return n


@_typed
def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1)


@_typed
def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0)


@_typed
def seed_int(text: str) -> int:
    """A random seed in [0, 2**63) (a batch row ``b`` uses ``seed + b``, which must fit torch's 64 bits)."""
    n = _int(text, "an integer seed")
    if not 0 <= n < 2**63:
        raise ValueError(f"expected a seed in [0, 2^63), got {n}")
    return n


@_typed
def finite_float(text: str) -> float:
    """A finite number (no inf / nan)."""
    return _float(text, "a finite number")


@_typed
def positive_float(text: str) -> float:
    """A finite number > 0."""
    x = _float(text, "a finite number > 0")
    if x <= 0:
        raise ValueError(f"expected a number > 0, got {text}")
    return x


@_typed
def probability(text: str) -> float:
    """A number in (0, 1] (nucleus mass)."""
    x = _float(text, "a number in (0, 1]")
    if not 0 < x <= 1:
        raise ValueError(f"expected a number in (0, 1], got {text}")
    return x


@_typed
def text_arg(text: str) -> str:
    """Non-blank text (a prompt)."""
    if not text.strip():
        raise ValueError("the text is empty")
    return text


device_arg = _typed(resolve_device)
device_arg.__name__ = "device"


# ------------------------------------------------------------------------------------------------ flags
def add_model_args(p: argparse.ArgumentParser, *, toy_default: bool = True) -> None:
    g = p.add_argument_group("model")
    default = "$AROMNI_MODEL, else the shipped toy bundle" if toy_default else "$AROMNI_MODEL"
    g.add_argument("--model", default=None,
                   help=f"bundle directory, or 'toy' for the shipped toy bundle (default: {default})")
    g.add_argument("--device", default="cpu", type=device_arg, help="cpu, cuda, cuda:1, mps (default: cpu)")
    g.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="weights dtype (default: as stored)")
    g.add_argument("--compile", action="store_true",
                   help="decode with the compiled static step (torch.compile; CUDA graphs on CUDA); the first "
                        "generation pays the compile")
    g.add_argument("--quantize", choices=list(SCHEMES), default=None,
                   help="quantize the decoder's linear layers: int8 (weight-only, per-channel scales), w8a8 (int8 "
                        "weights and per-token int8 activations: faster on CPU, a little less exact) or int4 "
                        "(weight-only 4-bit groups, CPU only: fastest at batch 1, least exact)")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads for torch (default: 1 for small models such as the toy bundle, whose "
                        "latency grows several-fold with more threads on a busy machine; torch's default otherwise)")


#: Help of the text/speech sampling flags (``add_sampling_args(help=...)`` replaces entries, e.g. for TTS).
SAMPLING_HELP = {
    "max_new_tokens": "generated tokens at most",
    "temperature": "text/speech temperature (official 1.2)",
    "top_p": "text/speech nucleus mass in (0, 1] (official 0.96)",
    "top_k": "text/speech top-k, 0 = off (default)",
    "repetition_penalty": "text/speech penalty > 0 (official 1.2; 1 = off)",
    "greedy": "greedy text/speech decoding (--no-greedy samples; default: the task's)",
}


def add_sampling_args(p: argparse.ArgumentParser, *, images: bool = True,
                      help: Mapping[str, str] | None = None) -> None:
    h = {**SAMPLING_HELP, **(help or {})}
    g = p.add_argument_group("decoding (defaults: the bundle's, then the official task settings)")
    g.add_argument("--seed", type=seed_int, default=None, help="random seed (reproducible sampling)")
    g.add_argument("--max-new-tokens", type=positive_int, default=None, help=h["max_new_tokens"])
    g.add_argument("--temperature", type=positive_float, default=None, help=h["temperature"])
    g.add_argument("--top-p", type=probability, default=None, help=h["top_p"])
    g.add_argument("--top-k", type=nonneg_int, default=None, help=h["top_k"])
    g.add_argument("--repetition-penalty", type=positive_float, default=None, help=h["repetition_penalty"])
    g.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=None, help=h["greedy"])
    if images:
        g.add_argument("--image-temperature", type=positive_float, default=None,
                       help="image temperature (official 1.0)")
        g.add_argument("--image-top-p", type=probability, default=None, help="image nucleus mass (official 0.96)")
        g.add_argument("--image-top-k", type=nonneg_int, default=None, help="image top-k, 0 = off (default)")
        g.add_argument("--image-greedy", action="store_true", default=None, help="argmax image codes")
        g.add_argument("--guidance-scale-text", type=finite_float, default=None, help="CFG text scale (official 3.07)")
        g.add_argument("--guidance-scale-image", type=finite_float, default=None,
                       help="CFG image scale (official 1.15; t2i 1.32)")
        g.add_argument("--no-cfg", action="store_true", help="no classifier-free guidance (one row per image)")


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one machine-readable JSON object")


def add_task_args(p: argparse.ArgumentParser, *, images: bool = True,
                  sampling_help: Mapping[str, str] | None = None) -> None:
    """Model, decoding and output flags of a task command."""
    add_model_args(p)
    add_sampling_args(p, images=images, help=sampling_help)
    add_output_args(p)


def add_train_run_args(p: argparse.ArgumentParser, *, settings_help: str) -> None:
    """The run-directory flags of a resumable trainer (``codec train``, ``vqgan train``): ``--out``,
    ``--config``, ``--resume`` (from the newest ``OUT/checkpoints/step-N``), ``--overwrite``, ``--quiet`` and
    ``key=value`` settings. Check them with :func:`check_train_run_args`."""
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--config", type=Path, help="YAML file of training settings")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its newest checkpoint (OUT/checkpoints/step-N)")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if OUT is not empty")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help=settings_help)


def check_train_run_args(args: argparse.Namespace) -> None:
    """Refuse ``--config`` with ``--resume``: a resumed run takes its settings from its checkpoint."""
    if args.resume and args.config is not None:
        raise ConfigError("--config cannot be combined with --resume",
                          "the run's settings come from its checkpoint; pass changes as key=value (steps=N)")


def decode_options(args: argparse.Namespace, task: Task, model: OmniModel) -> DecodeOptions:
    """The decoding options of a task command, built once: the bundle's defaults and the task's official
    settings (:func:`~aromni.inference.options.task_options`), then the flags that were given."""
    text = {"temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k,
            "repetition_penalty": args.repetition_penalty, "greedy": args.greedy}
    image = {"temperature": getattr(args, "image_temperature", None), "top_p": getattr(args, "image_top_p", None),
             "top_k": getattr(args, "image_top_k", None), "greedy": getattr(args, "image_greedy", None),
             "guidance_scale_text": getattr(args, "guidance_scale_text", None),
             "guidance_scale_image": getattr(args, "guidance_scale_image", None)}
    if getattr(args, "no_cfg", False):
        image["cfg"] = False
    top = {key: getattr(args, key, None) for key in ("seed", "max_new_tokens")}
    given = {k: v for k, v in top.items() if v is not None}
    return task_options(task, model.defaults).updated(
        text={k: v for k, v in text.items() if v is not None},
        image={k: v for k, v in image.items() if v is not None}, **given)


# ------------------------------------------------------------------------------------------------ the model
def resolve_model(spec: str | None, *, toy_default: bool = True) -> Path:
    """The bundle directory of ``--model``: the flag, else ``$AROMNI_MODEL``, else (``toy_default``) the shipped
    toy bundle, with a note on stderr. ``'toy'`` names the shipped bundle unless a ``./toy`` exists, as in
    :func:`aromni.load`."""
    if not spec:
        spec = os.environ.get("AROMNI_MODEL") or None
        if spec is None:
            if not toy_default:
                raise InputError("no model given", "pass --model BUNDLE (or 'toy') or set AROMNI_MODEL")
            path = _shipped_toy()
            note(TOY_NOTE)
            return path
    if spec in NAMED_BUNDLES and not Path(spec).exists():
        return _shipped_toy(spec)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec}: not a bundle (no such directory)",
                         "pass a bundle directory, 'toy' for the shipped toy bundle, or set AROMNI_MODEL")
    return path


def _shipped_toy(name: str = "toy") -> Path:
    try:
        return resolve_bundle(name)
    except InputError:
        raise InputError(f"no model given and this installation ships no {name} bundle",
                         "pass --model BUNDLE or set AROMNI_MODEL") from None


#: Decoders under this many parameters run on one CPU thread unless --threads says otherwise.
SMALL_MODEL_PARAMS = 50_000_000


def default_threads(n_params: int, device: str | torch.device = "cpu") -> int | None:
    """CPU threads for a decoder of ``n_params`` parameters when ``--threads`` is not given (``None``: leave
    torch's default, which is also what an explicit ``OMP_NUM_THREADS`` sets).

    Measured with the shipped toy bundle (5.8 M parameters) through the CLI on a 2-core machine, 4 alternating
    runs each (``aromni tts --stream`` first audio / ``aromni asr`` time):
    idle machine (load ~1.6 from other jobs): 1 thread 45-51 ms / 110-117 ms, 2 threads 40-59 ms / 89-97 ms
    (one outlier run at 1059 ms first audio);
    one extra busy core: 1 thread 49-67 ms / 0.12-0.56 s, 2 threads 0.22-1.8 s / 0.30-5.0 s.
    Two threads save ~20 % on an idle machine and cost 3-30x when a core is busy, so small models get one.
    """
    if torch.device(device).type != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        return None
    return 1 if n_params < SMALL_MODEL_PARAMS else None


def load_model(args: argparse.Namespace, *, toy_default: bool = True) -> OmniModel:
    """The :class:`~aromni.inference.omni.OmniModel` of ``--model`` on ``--device`` in ``--dtype``, with
    ``--threads`` (or :func:`default_threads`) set. Sets ``args.model_path`` to the bundle directory."""
    path = resolve_model(getattr(args, "model", None), toy_default=toy_default)
    args.model_path = path
    device = args.device if not isinstance(args.device, str) else resolve_device(args.device)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    model = OmniModel.load(path, device=device, dtype=args.dtype, compile=getattr(args, "compile", False),
                           quantize=getattr(args, "quantize", None))
    if not getattr(args, "threads", None):
        n = default_threads(sum(p.numel() for p in model.bundle.decoder.parameters()), device)
        if n is not None:
            torch.set_num_threads(n)
    return model


# ------------------------------------------------------------------------------------------------ outputs
def check_output_path(path: str | Path, overwrite: bool, suffixes: tuple[str, ...]) -> Path:
    """Refuse to overwrite silently and reject a wrong extension before any compute is spent."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{path}: expected a {' or '.join(suffixes)} file name")
    if path.is_dir():
        raise InputError(f"{path} is a directory", "pass a file path")
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists", "choose another path or pass --overwrite")
    make_dir(path.parent)
    return path


def make_dir(path: Path) -> Path:
    """``mkdir -p`` with a one-line error (a file in the way, no permission)."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} exists and is not a directory", "choose another output location")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create the directory {path} ({e.strerror or e})") from None
    return path


def safe_print(text: str, file: TextIO | None = None, *, end: str = "\n", flush: bool = False) -> None:
    """``print`` that never fails on text the stream cannot encode (a lone surrogate, a non-UTF-8 terminal):
    such characters are written as backslash escapes."""
    file = file if file is not None else sys.stdout
    try:
        print(text, file=file, end=end, flush=flush)
    except UnicodeEncodeError:
        enc = getattr(file, "encoding", None) or "utf-8"
        print(text.encode(enc, "backslashreplace").decode(enc, "replace"), file=file, end=end, flush=flush)


def dumps_line(payload: JSONValue) -> str:
    """One JSON line: non-ASCII kept as is, unless it cannot be encoded (lone surrogates), then escaped."""
    text = json.dumps(payload, ensure_ascii=False, default=_jsonable)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(payload, ensure_ascii=True, default=_jsonable)
    return text


def emit(args: argparse.Namespace, payload: dict[str, JSONValue], human: str) -> None:
    """Print ``payload`` as JSON with ``--json``, else the human-readable line."""
    if getattr(args, "json", False):
        safe_print(dumps_line(payload))
    else:
        safe_print(human)
    sys.stdout.flush()


def _jsonable(x: object) -> JSONValue:
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def rounded(d: Mapping[str, JSONValue], digits: int = 4) -> dict[str, JSONValue]:
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in d.items()}


# ------------------------------------------------------------------------------------------------ notes
_NOTES: list[str] = []


def note(message: str) -> None:
    """An informational stderr line. On a terminal it shows at once; otherwise it is held until the command
    succeeds (:func:`flush_notes`), so a failing command still prints exactly one ``error:`` line."""
    if sys.stderr.isatty():
        safe_print(message, sys.stderr)
    else:
        _NOTES.append(message)


def flush_notes(show: bool = True) -> None:
    held, _NOTES[:] = list(_NOTES), []
    if show:
        for m in held:
            safe_print(m, sys.stderr)
