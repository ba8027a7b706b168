"""``aromni vivo``: one caption -> an image and its spoken narration, drawn in one OmniVIVO decoding loop.

::

    aromni vivo "a red circle at the top left" --model runs/speech/omnivivo --vq runs/vq/tokenizer --out out/
    aromni vivo "..." --model EXPORT --vq VQ --out out/ --stream    # also report each audio chunk as it arrives

``--model`` is the export of ``aromni omnivivo train`` (``OUT/omnivivo``); it does not hold the image tokenizer,
so ``--vq`` names it (the ``tokenizer/`` of ``aromni llamagen vq-train``, or LlamaGen's ``vq_ds16_t2i.pt``).

Writes ``vivo.png``, ``vivo.wav`` and ``vivo.json`` (prompt, settings, codes, timings) into ``--out``: built in a
hidden staging folder there and moved into place, ``vivo.json`` last. Other files in ``--out`` are never touched;
an existing ``vivo.*`` is replaced only when the ``vivo.json`` beside it says this command wrote it (else
``--overwrite``). Prints the image time and the speech FTL (first speech code), first audio and RTF; with
``--stream`` also each audio chunk's arrival time (stderr).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from aromni.cli import common
from aromni.errors import InputError
from aromni.omnivivo.api import CHUNK_CODES, FIRST_CHUNK_CODES, TimedEvent, VivoPipeline, VivoResult
from aromni.omnivivo.ras import SpeechSampling
from aromni.omnivivo.t2i_generate import T2ISampling
from aromni.omnivivo.vivo_generate import ImageDone, SpeechAudio
from aromni.tokenizers.image.image_io import save_image
from aromni.tokenizers.speech.audio_io import save_wav
from aromni.utils.io import JSONValue, atomic_write_json, path_kind, read_json

IMAGE, AUDIO, RECORD = "vivo.png", "vivo.wav", "vivo.json"
#: What the command writes into --out (the record last).
OUTPUTS = (IMAGE, AUDIO, RECORD)
#: ``vivo.json``'s ``"type"``: marks the files it lists as this command's own.
RECORD_TYPE = "aromni_vivo"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vivo", help="OmniVIVO: draw an image and speak its narration in one decoding loop",
                       description="Draw the image of a caption and speak it at the same time (OmniVIVO); writes "
                                   f"OUT/{IMAGE}, OUT/{AUDIO} and OUT/{RECORD} and prints the latencies.")
    p.add_argument("prompt", type=common.text_arg, help="the caption to draw and speak")
    p.add_argument("--model", required=True, type=Path,
                   help="the OmniVIVO export directory (OUT/omnivivo of `aromni omnivivo train`)")
    p.add_argument("--vq", required=True, type=Path,
                   help="the image tokenizer the backbone draws for (the export does not hold it): the tokenizer/ "
                        "of `aromni llamagen vq-train`, or LlamaGen's vq_ds16_t2i.pt")
    p.add_argument("--out", required=True, type=Path, help=f"output directory ({', '.join(OUTPUTS)})")
    p.add_argument("--stream", action="store_true", help="report each audio chunk as it arrives (stderr)")
    p.add_argument("--seed", type=common.seed_int, default=0, help="image seed (speech: seed + 1000003)")
    p.add_argument("--cfg-scale", type=common.finite_float, default=T2ISampling.cfg_scale,
                   help=f"image classifier-free guidance scale (default {T2ISampling.cfg_scale}; 1 = off)")
    p.add_argument("--image-top-k", type=common.nonneg_int, default=T2ISampling.top_k,
                   help=f"image top-k, 0 = all codes (default {T2ISampling.top_k})")
    p.add_argument("--first-chunk-codes", type=common.positive_int, default=FIRST_CHUNK_CODES,
                   help=f"speech codes in the first audio chunk (default {FIRST_CHUNK_CODES})")
    p.add_argument("--chunk-codes", type=common.positive_int, default=CHUNK_CODES,
                   help=f"speech codes per later audio chunk (default {CHUNK_CODES})")
    p.add_argument("--device", default="cpu", type=common.device_arg, help="cpu, cuda, cuda:1, mps (default: cpu)")
    p.add_argument("--threads", type=common.positive_int, default=None,
                   help="CPU threads for torch (default: 1 for small models, torch's default otherwise)")
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace {', '.join(OUTPUTS)} in --out even when this command did not write them")
    common.add_output_args(p)
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------- the out dir
def own_files(out: Path) -> set[str]:
    """The outputs in ``out`` that an earlier run of this command wrote (listed by its ``vivo.json``)."""
    if path_kind(out / RECORD) != "file":
        return set()
    try:
        record = read_json(out / RECORD)
    except InputError:
        return set()  # not JSON: the user's file
    if not isinstance(record, dict) or record.get("type") != RECORD_TYPE or not isinstance(record.get("files"), dict):
        return set()
    return {RECORD} | {name for name in record["files"].values() if name in OUTPUTS}


def check_out(out: Path, overwrite: bool) -> Path:
    """Refuse (before any compute) an ``out`` that is not a directory, or outputs this command did not write."""
    kind = path_kind(out)
    if kind not in ("dir", "missing"):
        raise InputError(f"{out} exists and is not a directory", "pass a directory for --out")
    if kind == "dir":
        for name in OUTPUTS:
            if path_kind(out / name) not in ("file", "missing"):
                raise InputError(f"{out / name} exists and is not a file", "move it or choose another --out")
        ours = own_files(out)
        foreign = [name for name in OUTPUTS if (out / name).exists() and name not in ours]
        if foreign and not overwrite:
            raise InputError(f"{out / foreign[0]} exists and was not written by `aromni vivo`",
                             "move it, choose another --out, or pass --overwrite")
    return common.make_dir(out)


def publish(out: Path, result: VivoResult, record: dict[str, JSONValue]) -> None:
    """Write the three outputs into a staging folder in ``out``, then move them into place (the record last)."""
    stage = Path(tempfile.mkdtemp(prefix=".vivo-partial-", dir=out))
    try:
        save_image(result.image, stage / IMAGE)
        save_wav(stage / AUDIO, result.audio, result.sample_rate)
        atomic_write_json(stage / RECORD, record)
        for name in OUTPUTS:
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- the run
def run(args: argparse.Namespace) -> int:
    out = check_out(args.out, args.overwrite)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = VivoPipeline.load(args.model, args.vq, device=args.device)
    if not args.threads:
        n = common.default_threads(sum(p.numel() for p in pipe.model.parameters()), pipe.device)
        if n is not None:
            torch.set_num_threads(n)
    image, speech = T2ISampling(cfg_scale=args.cfg_scale, top_k=args.image_top_k), SpeechSampling()
    kw = {"seed": args.seed, "image": image, "speech": speech, "first_chunk_codes": args.first_chunk_codes,
          "chunk_codes": args.chunk_codes}
    stream = pipe.generate(args.prompt, stream=True, progress=not (args.stream or args.json), **kw)
    chunks = [_report(args, timed, pipe.sample_rate) for timed in stream]
    result = stream.results[0]
    record: dict[str, JSONValue] = {
        "type": RECORD_TYPE, "prompt": args.prompt, "files": {"image": IMAGE, "audio": AUDIO},
        "model": str(args.model.resolve()), "vq": str(args.vq.resolve()), "device": str(pipe.device),
        "seed": args.seed, "settings": {"image": _fields(image), "speech": _fields(speech),
                                        "first_chunk_codes": args.first_chunk_codes, "chunk_codes": args.chunk_codes},
        "timings": common.rounded(result.timings.to_dict()), "audio_seconds": round(result.seconds, 4),
        "sample_rate": result.sample_rate, "stop_reason": result.stop_reason,
        "speech_codes": result.speech_codes.tolist(), "image_codes": result.image_codes.tolist(),
        "audio_chunks": [c for c in chunks if c is not None], "stream_exact": stream.exact}
    publish(out, result, record)
    common.emit(args, {**record, "out": str(out)}, _summary(out, result))
    return 0


def _report(args: argparse.Namespace, timed: TimedEvent, sample_rate: int) -> dict[str, JSONValue] | None:
    """An audio chunk's arrival (printed with --stream); the image's arrival is printed too."""
    ev, show = timed.event, args.stream and not args.json
    if isinstance(ev, ImageDone) and show:
        common.safe_print(f"image done at {timed.time:.3f} s", sys.stderr)
    if not isinstance(ev, SpeechAudio) or ev.audio.numel() == 0:
        return None
    seconds = ev.audio.numel() / sample_rate
    if show:
        common.safe_print(f"audio chunk: {seconds:.2f} s of audio at {timed.time:.3f} s", sys.stderr)
    return {"time": round(timed.time, 4), "seconds": round(seconds, 4)}


def _fields(settings: T2ISampling | SpeechSampling) -> dict[str, JSONValue]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1e3:.0f} ms"


def _summary(out: Path, result: VivoResult) -> str:
    t = result.timings
    w, h = result.image.size
    image = "n/a" if t.image_seconds is None else f"{t.image_seconds:.3f} s"
    rtf = "n/a" if t.rtf is None else f"{t.rtf:.3f}"
    return (f"wrote {out / IMAGE} ({w}x{h}), {out / AUDIO} ({result.seconds:.2f} s), {out / RECORD}; "
            f"image {image}; speech FTL {_ms(t.ftl)}, first audio {_ms(t.first_audio)}, RTF {rtf}")
