"""Streaming TTS latency: aromni's engine + streaming codec vs transformers' Chameleon ``generate()``.

For one TTS request the script measures, from the moment the request is made:

* FTL, the paper's first-token latency (§4.3): when the first speech token that can be decoded at once is on the
  host, i.e. speech code number ``1 + lookahead`` of the codec (our codec: lookahead 1 frame);
* time to first audio: when the first playable samples leave the speech decoder;
* RTF: total synthesis time (request to last sample) / audio duration; and decode tokens/s.

aromni streams: engine steps feed the codec's stream decoder in chunks (``--first-chunk-frames`` then
``--chunk-frames``). The baseline is ``ChameleonForConditionalGeneration.generate()`` on the *same weights*
(copied through aromni's HF writer, image-logit masking off, the same speech-only allow-list and repetition
penalty 1.2, greedy as the official TTS), timed per token with a streamer; it has no streaming speech path, so
its audio comes from one offline codec decode after generation (what the official runner does). Its FTL is the
same theoretical point (token ``1 + lookahead``), time to first audio is when the offline decode finishes.

Without ``--model`` the bundle is random (a decoder preset, a trained-on-the-spot tiny BPE, the ``toy`` codec
architecture with random weights); the prompt ends with ``<boa>`` and ``<eoa>``/stop tokens are suppressed on
both sides so every run yields exactly ``--speech-tokens`` speech codes (random weights would stop anywhere).
With ``--model`` (e.g. the toy bundle) the real TTS prompt and stop rules are used on our side.

    .venv/bin/python benchmarks/stream_tts.py                       # random 100m decoder, 120 speech tokens
    .venv/bin/python benchmarks/stream_tts.py --size tiny --speech-tokens 80 --repeats 2
    .venv/bin/python benchmarks/stream_tts.py --model toy_bundle --json out.json
    .venv/bin/python benchmarks/stream_tts.py --compile            # our side with the compiled static step
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name
from decode import hf_model, random_decoder

from aromni.bundle import Bundle
from aromni.inference.omni import OmniModel
from aromni.inference.streaming import SpeechStreamer
from aromni.models import DecoderConfig

TEXT = "The quick brown fox jumps over the lazy dog near the river bank."


class _NoStop(torch.nn.Module):
    """Wrap a decoder so ``<eoa>``/``<eos>``/``<eom>`` never win (random weights would stop at random points)."""

    def __init__(self, decoder, banned: list[int]):
        super().__init__()
        self.inner = decoder
        self.banned = banned

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)

    def forward(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        out[..., self.banned] = float("-inf")
        return out


def random_bundle(size: str, seed: int) -> Bundle:
    from aromni.tokenizers.speech.codec.config import CodecConfig
    from aromni.tokenizers.speech.codec.model import StreamingCodec
    from aromni.tokenizers.text import TextTokenizer
    from aromni.vocab.layout import VocabLayout

    torch.manual_seed(seed)
    codec = StreamingCodec(CodecConfig.preset("toy")).eval()
    probe = VocabLayout.compact(0, 512, codec.codebook_size)
    specials = probe.special_token_strings()
    corpus = [TEXT, "USER: GPT: Convert this text into speech. This is input: "] * 20
    text = TextTokenizer.train(corpus, 1000, specials, min_frequency=1)
    layout = VocabLayout.compact(text.vocab_size - len(specials), 512, codec.codebook_size)
    cfg = DecoderConfig.preset(size, vocab_size=layout.vocab_size)
    return Bundle(decoder=random_decoder(cfg, seed), layout=layout, text=text, speech=codec)


def run_ours(m: OmniModel, n: int, first: int, chunk: int, forced: bool, text: str = TEXT) -> dict:
    t0 = time.perf_counter()
    prompt = m._task_prompt("tts", text=text) + ([m.layout.boa] if forced else [])
    opts = m.options("tts", max_new_tokens=n)  # as OmniModel.tts resolves them (the cached task options)
    gen = m.engine.generate([prompt], opts)
    streamer = SpeechStreamer(gen, m.speech, m.layout, first_chunk_frames=first, chunk_frames=chunk, t_start=t0)
    samples, times = 0, []
    for step in gen:  # the engine's steps; the streamer decodes audio between them
        times.append(step.time)
        samples += sum(c.audio.numel() for c in streamer.feed(step))
    samples += sum(c.audio.numel() for c in streamer.finish())
    mt = streamer.metrics[0]
    g = gen.results[0]
    if mt.ftl is None:
        raise SystemExit(f"the model produced no speech for {text!r} (stop: {g.stop_reason}); pass --text with a "
                         "sentence it can speak, or drop --no-baseline to force a speech span")
    # tokens/s between the first and the last token, streaming audio decode included (it runs in between)
    return {"ftl_ms": 1e3 * mt.ftl, "first_audio_ms": 1e3 * mt.first_audio, "total_s": mt.total,
            "audio_s": samples / m.speech.sample_rate, "rtf": mt.rtf, "speech_tokens": mt.speech_codes,
            "decode_tok_s": (len(times) - 1) / max(times[-1] - times[0], 1e-9),
            "codes": [t for t in g.tokens if m.layout.speech.contains(t)]}


def run_hf(hf, m: OmniModel, n: int, lookahead: int, text: str = TEXT) -> dict:
    from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
    from transformers.generation.streamers import BaseStreamer

    allowed = m.layout.mask("speech")

    class SpeechOnly(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return scores.masked_fill(~allowed.to(scores.device), float("-inf"))

    class Clock(BaseStreamer):
        def __init__(self):
            self.times: list[float] = []
            self.calls = 0

        def put(self, value):
            self.calls += 1
            if self.calls > 1:  # the first call carries the prompt
                self.times.append(time.perf_counter())

        def end(self):
            pass

    t0 = time.perf_counter()
    prompt = torch.tensor([m._task_prompt("tts", text=text) + [m.layout.boa]])
    gc = GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=False, repetition_penalty=1.2,
                          eos_token_id=None, pad_token_id=m.layout.pad, bos_token_id=None, use_cache=True)
    clock = Clock()
    with torch.inference_mode():
        seq = hf.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=gc,
                          logits_processor=LogitsProcessorList([SpeechOnly()]), streamer=clock)
        ids = seq[0, prompt.shape[1]:].tolist()
        audio = m.speech.decode(torch.tensor([m.layout.speech.to_codes(ids)]))[0]
    t_end = time.perf_counter()
    audio_s = audio.numel() / m.speech.sample_rate
    return {"ftl_ms": 1e3 * (clock.times[lookahead] - t0), "first_audio_ms": 1e3 * (t_end - t0),
            "total_s": t_end - t0, "audio_s": audio_s, "rtf": (t_end - t0) / audio_s, "speech_tokens": len(ids),
            "decode_tok_s": (len(ids) - 1) / max(clock.times[-1] - clock.times[0], 1e-9), "codes": ids}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="bundle with a speech codec (default: a random bundle)")
    ap.add_argument("--size", default="100m", help="decoder preset of the random bundle (tiny, 100m, ...)")
    ap.add_argument("--speech-tokens", type=int, default=120, help="speech tokens per request (40/s: 3 s)")
    ap.add_argument("--first-chunk-frames", type=int, default=4)
    ap.add_argument("--chunk-frames", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per system (best total is reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--no-baseline", action="store_true", help="skip transformers")
    ap.add_argument("--compile", action="store_true", help="our engine decodes with the compiled static step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text", default=TEXT, help="the sentence to speak (for a trained bundle: one it knows)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    # Both systems generate exactly --speech-tokens codes whenever the baseline runs (a random model, or a bundle
    # compared with transformers): a speech span is forced and stop tokens are masked. A bundle alone speaks freely.
    forced = args.model is None or not args.no_baseline
    if args.model is None:
        bundle = random_bundle(args.size, args.seed)
        desc = f"random {args.size} decoder ({bundle.decoder.cfg.num_params() / 1e6:.0f} M params), random toy codec"
    else:
        bundle = OmniModel.load(args.model).bundle
        desc = f"bundle {args.model} ({bundle.decoder.cfg.num_params() / 1e6:.1f} M params)"
    plain = bundle.decoder
    if forced:
        L = bundle.layout
        bundle.decoder = _NoStop(plain, [L.eoa, L.eos, L.eom])
    m = OmniModel(bundle, compile=args.compile)
    lookahead = m.speech.stream_decoder(1).lookahead_frames
    systems = {"aromni (streaming)": lambda: run_ours(m, args.speech_tokens, args.first_chunk_frames,
                                                        args.chunk_frames, forced, args.text)}
    if not args.no_baseline:
        hf = hf_model(plain, "sdpa")
        systems["transformers generate() + offline decode"] = lambda: run_hf(hf, m, args.speech_tokens, lookahead, args.text)
    rows = {}
    for name, fn in systems.items():
        fn()  # warm-up
    for _ in range(args.repeats):  # interleaved so both see the same machine load
        for name, fn in systems.items():
            r = fn()
            if name not in rows or r["total_s"] < rows[name]["total_s"]:
                rows[name] = r
    codes = [r.pop("codes") for r in rows.values()]
    same = len(codes) < 2 or codes[0] == codes[1]
    device = f"CPU: {cpu_name()}, {torch.get_num_threads()} thread(s)"
    step = "compiled static step; " if args.compile else ""
    print(f"device: {device}; {desc}; fp32, greedy; {step}{args.speech_tokens} speech tokens at "
          f"{m.speech.frame_rate:g}/s; codec lookahead {lookahead} frame(s); best of {args.repeats}")
    cols = ["ftl_ms", "first_audio_ms", "total_s", "audio_s", "rtf", "decode_tok_s"]
    print(f"{'system':42s}" + "".join(f"{c:>16s}" for c in cols))
    for name, r in rows.items():
        print(f"{name:42s}" + "".join(f"{r[c]:16.3f}" for c in cols))
    if len(rows) == 2:
        print(f"speech tokens identical: {'yes' if same else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "model": desc, "speech_tokens": args.speech_tokens,
                                         "lookahead_frames": lookahead, "results": rows,
                                         "tokens_identical": same}, indent=2) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
