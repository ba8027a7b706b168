"""``aromni tts``: text to speech (greedy, official TTS prompt); ``--stream`` decodes audio while generating.

Several ``--text`` values (with ``--out-dir``) or ``--input requests.jsonl`` run in batches; see
:mod:`aromni.cli.batch`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
import torch

from aromni.cli import batch, common
from aromni.errors import AromniError, InputError
from aromni.inference.media import save_wav
from aromni.inference.omni import OmniModel, SpeechOutput
from aromni.inference.options import DecodeOptions
from aromni.utils.io import JSONValue
from aromni.vocab.tasks import TTS

#: What the sampling flags really do in TTS. The finite-state decoder picks speech codes greedily inside a
#: <boa> ... <eoa> span whatever the flags say (greedy switches on at <boa>, off at <eoa>), and the TTS task
#: decodes text greedily by default. So temperature / top-p / top-k never change a speech span: they reach only
#: the tokens outside speech spans, after an <eoa> (stop, text, or another span) and, with --no-greedy, before
#: the first <boa> (a reply that starts with text; never with --force-speech, whose prompt ends with <boa>).
_OUTSIDE = ("only tokens outside speech spans: after an <eoa>, and before the first <boa> with --no-greedy; "
            "speech codes are always chosen greedily, so it never changes the speech itself")
TTS_SAMPLING_HELP = {
    "temperature": f"text temperature > 0 (official 1.2); in TTS it affects {_OUTSIDE}",
    "top_p": f"text nucleus mass in (0, 1] (official 0.96); in TTS it affects {_OUTSIDE}",
    "top_k": f"text top-k, 0 = off (default); in TTS it affects {_OUTSIDE}",
    "repetition_penalty": "penalty > 0 on ids already in the context (official 1.2; 1 = off); unlike the flags "
                          "above it also applies to speech codes and can change the greedy choice",
    "greedy": "TTS starts greedy (default); --no-greedy samples a reply that starts with text. Speech codes are "
              "greedy either way, and tokens after an <eoa> are sampled either way (the official switch)",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = batch.add_text_to_media_parser(sub, TTS, "synthesise speech from text",
                                       "the text to speak (several: one file each)",
                                       '{"text": "hello there", "out": "hello.wav"}',
                                       "output .wav file of a single --text")
    p.add_argument("--stream", action="store_true",
                   help="decode audio chunks while the speech tokens are generated (reports latency; one --text)")
    p.add_argument("--first-chunk-frames", type=common.positive_int, default=4,
                   help="codes in the first streamed chunk")
    p.add_argument("--chunk-frames", type=common.positive_int, default=20, help="codes per later streamed chunk")
    p.add_argument("--instruction", default=None, help="override the task instruction")
    p.add_argument("--force-speech", action="store_true",
                   help="end the prompt with <boa> so the reply starts with speech (not the official prompt)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    common.add_task_args(p, images=False, sampling_help=TTS_SAMPLING_HELP)
    batch.add_batch_args(p, media_out=".wav")
    p.set_defaults(func=run)


def _kw(args: argparse.Namespace, options: DecodeOptions) -> dict[str, str | int | bool | DecodeOptions | None]:
    return {"instruction": args.instruction, "options": options,
            "first_chunk_frames": args.first_chunk_frames, "chunk_frames": args.chunk_frames,
            "force_speech": args.force_speech}


def run(args: argparse.Namespace) -> int:
    if args.input is None and len(args.text) == 1 and args.out_dir is None and args.output is None:
        if args.out is None:
            raise InputError("tts needs --out FILE.wav", "e.g. --out speech.wav")
        return run_one(args, args.text[0])
    if args.stream:
        raise InputError("--stream runs a single --text", "drop --stream to synthesise several inputs")
    requests = batch.planned_text_requests(args, (".wav",))

    def save(model: OmniModel, speech: SpeechOutput, path: Path) -> dict[str, JSONValue]:
        speech.save(path, overwrite=True)
        return {"seconds": round(speech.seconds, 3), "sample_rate": speech.sample_rate,
                "speech_codes": len(speech.codes), "stop_reason": speech.stop_reason}

    return batch.media_task(args, requests, TTS, lambda m, opts, texts: m.tts(texts, **_kw(args, opts)), save)


def run_one(args: argparse.Namespace, text: str) -> int:
    out = common.check_output_path(args.out, args.overwrite, (".wav",))
    model = common.load_model(args)
    kw = _kw(args, common.decode_options(args, TTS, model))
    if args.stream:
        stream = model.tts(text, stream=True, **kw)
        chunks = []
        for c in stream:
            chunks.append(c.audio)
            if not args.json:
                print(f"chunk {len(chunks)}: {c.audio.numel() / model.speech.sample_rate:.2f} s of audio "
                      f"at {c.time - stream.t_start:.3f} s", file=sys.stderr)
        audio = torch.cat(chunks) if chunks else torch.zeros(0)
        if audio.numel() == 0:
            raise AromniError(f"the model produced no speech tokens (stop: {stream.results[0].stop_reason})",
                              "check that the bundle was trained for TTS")
        metrics = stream.metrics[0].to_dict()
        stop, n_codes, exact = stream.results[0].stop_reason, stream.metrics[0].speech_codes, stream.exact
    else:
        speech = model.tts(text, **kw)
        audio, metrics, stop, n_codes, exact = speech.audio, speech.metrics, speech.stop_reason, len(speech.codes), None
    save_wav(audio, out, model.speech.sample_rate, overwrite=True)
    seconds = audio.numel() / model.speech.sample_rate
    payload = {"text": text, "out": str(out), "seconds": round(seconds, 3), "sample_rate": model.speech.sample_rate,
               "speech_codes": n_codes, "stop_reason": stop, "streamed": args.stream, "latency": common.rounded(metrics)}
    if exact is not None:
        payload["stream_exact"] = exact
    human = f"wrote {out} ({seconds:.2f} s)"
    if metrics.get("rtf") is not None:
        human += f"; RTF {metrics['rtf']:.3f}"
    if metrics.get("ftl") is not None:
        human += f", FTL {metrics['ftl'] * 1e3:.0f} ms, first audio {metrics['first_audio'] * 1e3:.0f} ms"
    common.emit(args, payload, human)
    return 0
