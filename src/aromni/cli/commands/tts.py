"""``aromni tts``: text to speech (greedy, official TTS prompt); ``--stream`` decodes audio while generating."""

from __future__ import annotations

import argparse
import sys

import torch

from aromni.cli import common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tts", help="synthesise speech from text")
    p.add_argument("--text", required=True, help="the text to speak")
    p.add_argument("--out", required=True, help="output .wav file")
    p.add_argument("--stream", action="store_true",
                   help="decode audio chunks while the speech tokens are generated (reports latency)")
    p.add_argument("--first-chunk-frames", type=int, default=4, help="codes in the first streamed chunk")
    p.add_argument("--chunk-frames", type=int, default=20, help="codes per later streamed chunk")
    p.add_argument("--instruction", default=None, help="override the task instruction")
    p.add_argument("--force-speech", action="store_true",
                   help="end the prompt with <boa> so the reply starts with speech (not the official prompt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    common.add_task_args(p, images=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = common.check_output_path(args.out, args.overwrite, (".wav",))
    model = common.load_model(args)
    ov = common.overrides(args)
    kw = {"instruction": args.instruction, "options": ov, "first_chunk_frames": args.first_chunk_frames,
          "chunk_frames": args.chunk_frames, "force_speech": args.force_speech}
    if args.stream:
        stream = model.tts(args.text, stream=True, **kw)
        chunks = []
        for c in stream:
            chunks.append(c.audio)
            if not args.json:
                print(f"chunk {len(chunks)}: {c.audio.numel() / model.speech.sample_rate:.2f} s of audio "
                      f"at {c.time - stream.t_start:.3f} s", file=sys.stderr)
        audio = torch.cat(chunks) if chunks else torch.zeros(0)
        if audio.numel() == 0:
            from aromni.errors import AromniError

            raise AromniError(f"the model produced no speech tokens (stop: {stream.results[0].stop_reason})",
                              "check that the bundle was trained for TTS")
        metrics = stream.metrics[0].to_dict()
        stop, n_codes, exact = stream.results[0].stop_reason, stream.metrics[0].speech_codes, stream.exact
    else:
        speech = model.tts(args.text, **kw)
        audio, metrics, stop, n_codes, exact = speech.audio, speech.metrics, speech.stop_reason, len(speech.codes), None
    from aromni.inference.media import save_wav

    save_wav(audio, out, model.speech.sample_rate, overwrite=True)
    seconds = audio.numel() / model.speech.sample_rate
    payload = {"text": args.text, "out": str(out), "seconds": round(seconds, 3), "sample_rate": model.speech.sample_rate,
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
