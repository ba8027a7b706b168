"""``OmniModel``: a loaded bundle with one method per task.

::

    import aromni
    model = aromni.load("BUNDLE", device="cuda", dtype="bfloat16")
    speech = model.tts("Hello there.")                  # SpeechOutput; speech.save("hello.wav")
    for chunk in model.tts("Hello there.", stream=True): # TTSStream of AudioChunk, metrics afterwards
        play(chunk.audio)
    text = model.asr("question.wav").text
    text = model.caption("photo.jpg").text
    image = model.t2i("a red circle").image             # PIL image
    chat = model.chat(); reply = chat.send(text="Hi!")

Each task builds the official prompt (:mod:`aromni.vocab.templates`, or the paper's when the bundle says so),
applies the official task decoding settings (:func:`~aromni.inference.options.task_options`) on top of the bundle's
generation defaults, and accepts a list of inputs for a batched call. Sampling options can be overridden per call
with ``options={"text": {"temperature": 0.7}}`` (converted once, on top of those defaults) or the shortcut
arguments; ``options=`` also takes a ready :class:`~aromni.inference.options.DecodeOptions` (e.g.
``model.options("tts").updated(seed=1)``), which is used as it is.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aromni.errors import AromniError, ConfigError, InputError
from aromni.inference import media
from aromni.inference.engine import Engine, Generation, GenerationStream
from aromni.inference.events import SegmentAssembler
from aromni.inference.options import DecodeOptions, task_options
from aromni.inference.streaming import AudioChunk, SpeechStreamer, StreamMetrics
from aromni.models.quantize import quantize_decoder_
from aromni.vocab.conversation import (
    Conversation,
    ImageSegment,
    Segment,
    SpeechSegment,
    TextSegment,
    encode_conversation,
)
from aromni.bundle import Bundle
from aromni.inference.chat import ChatSession, Decoded
from aromni.inference.media import AudioInput, ImageInput
from aromni.tokenizers.text import check_text as check_text_chars
from aromni.utils.device import resolve_device
from aromni.vocab.tasks import ASR, CAPTION, CHAT, T2I, TTS, Task
from aromni.vocab.templates import task_conversation

#: What a task call accepts as ``options``: ready options, a mapping of overrides, or nothing.
OptionsArg = DecodeOptions | Mapping[str, object] | None

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
#: Weight dtypes a model can run in (``float64`` works too, for checks on CPU).
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``None`` (as saved), a floating torch dtype, or one of the names in :data:`DTYPES` (``"torch.float16"``
    too); :class:`ConfigError` listing the allowed ones otherwise (``torch.int64``, ``"int8"``, ``5``)."""
    allowed = f"one of {', '.join(DTYPES)} (or torch.float32 / torch.float16 / torch.bfloat16)"
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        if dtype not in FLOAT_DTYPES:
            raise ConfigError(f"dtype {dtype} cannot hold model weights", allowed)
        return dtype
    name = dtype.removeprefix("torch.") if isinstance(dtype, str) else None
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}", allowed)
    return DTYPES[name]


@dataclass
class TextOutput:
    """Text produced by a task (``str(out)`` is the text)."""

    text: str
    tokens: list[int]
    stop_reason: str | None
    seconds: float = 0.0

    def __str__(self) -> str:
        return self.text


@dataclass
class SpeechOutput:
    """A waveform ``audio [T]`` (float32, CPU) at ``sample_rate`` with the codes and tokens behind it."""

    audio: torch.Tensor
    sample_rate: int
    codes: list[int]
    tokens: list[int]
    stop_reason: str | None
    metrics: dict[str, float | None] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.audio.numel() / self.sample_rate

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write 16-bit PCM WAV atomically; refuses to replace an existing file unless ``overwrite=True``."""
        return media.save_wav(self.audio, path, self.sample_rate, overwrite=overwrite)


@dataclass
class ImageOutput:
    """A generated image (PIL) with its codes; ``complete`` is False when the code span was cut short."""

    image: Decoded  # a PIL image
    codes: list[int]
    tokens: list[int]
    stop_reason: str | None
    complete: bool = True
    seconds: float = 0.0

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the image atomically (format from the suffix); refuses to replace an existing file unless
        ``overwrite=True``."""
        return media.save_png(self.image, path, overwrite=overwrite)


class TTSStream:
    """Iterator of :class:`AudioChunk` for one or more TTS requests; ``metrics`` (one per request) and
    ``results`` (the engine's :class:`Generation` s) are complete once it is exhausted."""

    def __init__(self, streamer: SpeechStreamer, stream: GenerationStream):
        self._streamer, self._stream = streamer, stream

    def __iter__(self) -> Iterator[AudioChunk]:
        return iter(self._streamer)

    @property
    def metrics(self) -> list[StreamMetrics]:
        return self._streamer.metrics

    @property
    def results(self) -> list[Generation]:
        return self._stream.results

    @property
    def exact(self) -> bool:
        return self._streamer.exact

    @property
    def t_start(self) -> float:
        """``time.perf_counter()`` when the request was made (latencies are measured from it)."""
        return self._streamer.t_start


class OmniModel:
    """A bundle ready for every task. Build with :meth:`load`."""

    def __init__(self, bundle: Bundle, *, compile: bool = False):
        self.bundle = bundle
        self.layout, self.style = bundle.layout, bundle.style
        self.text, self.image, self.speech = bundle.text, bundle.image, bundle.speech
        self.defaults = DecodeOptions().with_overrides(bundle.generation)
        self._task_options: dict[str, tuple[DecodeOptions, DecodeOptions]] = {}  # name -> (defaults, options)
        n_img = self.image.codes_per_image if self.image is not None else self.defaults.image_tokens
        self.engine = Engine(bundle.decoder, self.layout, image_tokens=n_img, compile=compile)

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
             compile: bool = False, quantize: str | None = None) -> OmniModel:
        """Open a bundle directory (see :mod:`aromni.bundle`) on ``device`` in ``dtype``. ``compile=True``
        decodes with the compiled static step (:func:`~aromni.inference.engine.compile_step`; the first
        generation of each batch size pays the compile). ``quantize="int8"`` stores the decoder's linear layers
        as int8 with per-channel scales; ``"w8a8"`` also rounds their inputs to int8 per token; ``"int4"``
        stores 4-bit groups (CPU only) (:mod:`aromni.models.quantize`).

        Raises :class:`~aromni.errors.InputError` for a path that is not a string/Path or a device that does not
        exist here, :class:`~aromni.errors.ConfigError` for a dtype that cannot hold weights, and
        :class:`~aromni.errors.CheckpointError` for a missing or malformed bundle."""
        if not isinstance(path, (str, Path)) or not str(path):
            raise InputError(f"a bundle path must be a non-empty string or Path, got {type(path).__name__} "
                             f"{path!r:.80}", "pass the bundle directory (or \"toy\")")
        device = resolve_device(device)
        bundle = Bundle.load(path, dtype=parse_dtype(dtype), device=device)
        bundle.decoder.eval()
        if quantize is not None:
            quantize_decoder_(bundle.decoder, quantize)
        return cls(bundle, compile=compile)

    @property
    def device(self) -> torch.device:
        return self.engine.device

    # ------------------------------------------------------------------------------------------ plumbing
    def options(self, task: str | Task, overrides: Mapping[str, object] | None = None,
                **shortcuts: object) -> DecodeOptions:
        """The options a task call runs with: bundle defaults + official task settings + overrides.

        The greedy tasks (``tts``, ``asr``, ``caption``) report ``text.greedy=True``; their text temperature,
        top-p and top-k are still shown because the official greedy/sampling switch can turn sampling on
        mid-reply (after ``<eoa>`` or ``<res>``): in TTS they apply only to the tokens after a speech span, never
        to the speech codes. See :data:`~aromni.inference.options.TASK_OVERRIDES`. ``overrides`` must be a
        mapping (``{"text": {"temperature": 0.7}}``); unknown keys and values of the wrong type raise
        :class:`~aromni.errors.ConfigError`.
        """
        _check_mapping(overrides)
        extra = {k: v for k, v in shortcuts.items() if v is not None}
        if not overrides:  # the common call: the task's cached options, plus at most a seed or a length
            base = self._task_defaults(task)
            return base.updated(**extra) if extra else base
        merged = dict(overrides)
        merged.update(extra)
        return task_options(task, self.defaults, merged)

    def _task_defaults(self, task: Task | str) -> DecodeOptions:
        """``task_options(task, self.defaults)``, computed once per task (options are frozen values; a new
        ``self.defaults`` invalidates the cache). Resolving them from dicts cost about 1 ms before the first
        token of every call."""
        name = task.name if isinstance(task, Task) else task
        if not isinstance(name, str):
            return task_options(task, self.defaults)  # raises the unknown-task error
        hit = self._task_options.get(name)
        if hit is None or hit[0] is not self.defaults:
            hit = (self.defaults, task_options(task, self.defaults))
            self._task_options[name] = hit
        return hit[1]

    def _resolve(self, task: Task, options: OptionsArg, *, image: Mapping[str, object] | None = None,
                 **shortcuts: object) -> DecodeOptions:
        """The options of one task call: a :class:`DecodeOptions` is taken as is (with the given shortcut
        arguments applied); a mapping of overrides is converted once, on top of the bundle and task defaults."""
        given = {k: v for k, v in shortcuts.items() if v is not None}
        image = {k: v for k, v in (image or {}).items() if v is not None}
        if isinstance(options, DecodeOptions):
            return options.updated(image=image, **given)
        _check_mapping(options)
        if not options:
            return self.options(task, None, **given, **({"image": image} if image else {}))
        merged = dict(options)
        if image:
            prior = merged.get("image", {})
            merged["image"] = {**prior, **image} if isinstance(prior, Mapping) else prior
        return self.options(task, merged, **given)

    def encode(self, conv: Conversation) -> list[int]:
        """A :class:`~aromni.vocab.conversation.Conversation` -> prompt ids."""
        media.require(self.text, "text")
        if not isinstance(conv, Conversation):
            raise InputError(f"encode takes a Conversation, got {type(conv).__name__}",
                             "build one with aromni.vocab.templates.task_conversation(...) or Conversation([...])")
        return encode_conversation(conv, self.layout, self.text, self.style).ids.tolist()

    def generate(self, prompts: Sequence[Sequence[int]], options: OptionsArg = None) -> GenerationStream:
        """Low level: an iterator of engine steps for raw prompt ids (``options``: a :class:`DecodeOptions` or a
        mapping of overrides on the bundle defaults)."""
        if options is None:
            options = self.defaults
        elif isinstance(options, Mapping):
            options = self.defaults.with_overrides(options)
        elif not isinstance(options, DecodeOptions):
            raise ConfigError(f"options must be a DecodeOptions or a mapping, got {type(options).__name__}",
                              "e.g. model.options('chat') or {'max_new_tokens': 32}")
        return self.engine.generate(prompts, options)

    def context(self, options: DecodeOptions | None = None) -> int:
        """Tokens a prompt plus its reply may hold under ``options`` (``max_seq_len`` capped by the model's)."""
        limit = self.engine.max_seq_len
        return min(options.max_seq_len or limit, limit) if options is not None else limit

    def check_text(self, text: object, what: str = "text", context: int | None = None, *, allow_empty: bool = False
                   ) -> str:
        """``text`` if it is a valid, non-blank string that could fit ``context`` tokens; :class:`InputError`
        otherwise.

        Refuses non-strings, empty or whitespace-only strings (unless ``allow_empty``), unpaired surrogates
        (:func:`aromni.tokenizers.text.check_text`), and, before any tokenizing, a text so long that even at the
        tokenizer's most characters per token it cannot fit the context (so a megabyte prompt fails at once with
        the context named)."""
        check_text_chars(text, what)
        if not allow_empty and not text.strip():
            raise InputError(f"{what} is empty", "pass some text")
        context = self.context() if context is None else context
        bound = getattr(self.text, "max_chars_per_token", None)
        if isinstance(bound, int) and len(text) > context * bound:
            raise InputError(f"{what} is {len(text):,} characters long, far more than this model's {context}-token "
                             f"context holds (a token covers at most {bound} characters)", "shorten it")
        return text

    def _task_prompt(self, task: Task, **inputs: Any) -> list[int]:
        return self.encode(task_conversation(task, style=self.style.name, **inputs))

    def _segments(self, g: Generation) -> list[Segment]:
        asm = SegmentAssembler(self.layout, self.text, image_tokens=self.engine.image_tokens)
        asm.resume_from(g.prompt)
        return asm.feed(g.tokens)

    def _text_of(self, g: Generation) -> str:
        return "".join(s.text for s in self._segments(g) if isinstance(s, TextSegment)).strip()

    # ------------------------------------------------------------------------------------------ tasks
    def tts(self, text: str | Sequence[str], *, stream: bool = False, instruction: str | None = None,
            seed: int | None = None, options: OptionsArg = None, max_new_tokens: int | None = None,
            first_chunk_frames: int = 4, chunk_frames: int = 20, decoder_options: Mapping[str, object] | None = None,
            force_speech: bool = False) -> SpeechOutput | list[SpeechOutput] | TTSStream:
        """Text to speech (greedy, as the official TTS). ``stream=True`` returns a :class:`TTSStream` of audio
        chunks produced while the speech tokens are generated. ``force_speech`` ends the prompt with ``<boa>``
        so the reply must start with speech (not in the official prompt; useful for weakly trained models)."""
        t0 = time.perf_counter()
        texts, single = _as_list(text, "text", strings=True)
        media.require(self.speech, "speech")
        opts = self._resolve(TTS, options, seed=seed, max_new_tokens=max_new_tokens)
        self._check_texts(texts, instruction, self.context(opts))
        prompts = [self._task_prompt(TTS, text=t, instruction=instruction) for t in texts]
        if force_speech:
            prompts = [p + [self.layout.boa] for p in prompts]
        gen = self.engine.generate(prompts, opts)
        streamer = SpeechStreamer(gen, self.speech, self.layout, first_chunk_frames=first_chunk_frames,
                                  chunk_frames=chunk_frames, t_start=t0, decoder_options=decoder_options)
        if stream:
            return TTSStream(streamer, gen)
        for _ in gen:
            pass
        outs = []
        for g in gen.results:
            codes = self.layout.speech.to_codes([t for t in g.tokens if self.layout.speech.contains(t)])
            if not codes:
                raise AromniError(f"the model produced no speech tokens ({len(g.tokens)} tokens, stop: "
                                  f"{g.stop_reason})", "check that the bundle was trained for TTS")
            audio = media.codes_to_audio(self.speech, codes)
            total = time.perf_counter() - t0
            metrics = {"total": total, "audio_seconds": audio.numel() / self.speech.sample_rate}
            metrics["rtf"] = total / metrics["audio_seconds"] if metrics["audio_seconds"] else None
            outs.append(SpeechOutput(audio, self.speech.sample_rate, list(codes), g.tokens, g.stop_reason, metrics))
        return outs[0] if single else outs

    def asr(self, audio: AudioInput | Sequence[AudioInput], *, sample_rate: int | None = None,
            instruction: str | None = None, seed: int | None = None, options: OptionsArg = None
            ) -> TextOutput | list[TextOutput]:
        """Speech to text (greedy). ``audio``: a file path, or a waveform with its ``sample_rate`` — ``[T]`` or
        channels-first ``[C, T]`` (averaged to mono), numpy, torch or a list of numbers; float samples in [-1, 1]
        or int16/int32 PCM (see :mod:`aromni.tokenizers.speech.audio_io`). A list of paths/waveforms is a batch.

        Audio longer than the context holds is refused before it is encoded, with how many seconds fit."""
        t0 = time.perf_counter()
        items, single = _as_list(audio, "audio", seq_of_numbers_is_one=True)
        media.require(self.speech, "speech")
        opts = self._resolve(ASR, options, seed=seed)
        context = self.context(opts)
        self._check_texts([], instruction, context)
        # Room for the codes: the prompt without them, and at least one token of transcript.
        max_frames = context - 1 - len(self._task_prompt(ASR, speech=[], instruction=instruction))
        prompts = []
        for i, a in enumerate(items):
            wav = media.waveform(self.speech, a, sample_rate)
            if media.frames_of(self.speech, wav) > max_frames:
                err = media.audio_too_long(self.speech, wav, max_frames, context, "an ASR prompt")
                raise err if single else InputError(f"audio {i}: {err.problem}", err.hint)
            codes = media.encode_waveform(self.speech, wav)
            prompts.append(self._task_prompt(ASR, speech=codes, instruction=instruction))
        results = self.engine.run(prompts, opts)
        outs = [TextOutput(self._text_of(g), g.tokens, g.stop_reason, time.perf_counter() - t0) for g in results]
        return outs[0] if single else outs

    def caption(self, image: ImageInput | Sequence[ImageInput], *, instruction: str | None = None,
                seed: int | None = None, options: OptionsArg = None, max_new_tokens: int | None = None
                ) -> TextOutput | list[TextOutput]:
        """Image (a path, PIL image or tensor) to text (greedy)."""
        t0 = time.perf_counter()
        items, single = _as_list(image, "image")
        media.require(self.image, "image")
        opts = self._resolve(CAPTION, options, seed=seed, max_new_tokens=max_new_tokens)
        self._check_texts([], instruction, self.context(opts))
        codes = [media.image_to_codes(self.image, im) for im in items]
        prompts = [self._task_prompt(CAPTION, image=c, instruction=instruction) for c in codes]
        outs = [TextOutput(self._text_of(g), g.tokens, g.stop_reason, time.perf_counter() - t0)
                for g in self.engine.run(prompts, opts)]
        return outs[0] if single else outs

    def t2i(self, text: str | Sequence[str], *, guidance_scale_text: float | None = None,
            guidance_scale_image: float | None = None, cfg: bool | None = None, instruction: str | None = None,
            seed: int | None = None, options: OptionsArg = None) -> ImageOutput | list[ImageOutput]:
        """Text to image (sampling with classifier-free guidance; official scales 3.07 text, 1.32 image)."""
        t0 = time.perf_counter()
        texts, single = _as_list(text, "text", strings=True)
        media.require(self.image, "image")
        img = {"guidance_scale_text": guidance_scale_text, "cfg": cfg, "guidance_scale_image": guidance_scale_image}
        opts = self._resolve(T2I, options, image=img, seed=seed)
        self._check_texts(texts, instruction, self.context(opts))
        prompts = [self._task_prompt(T2I, text=t, instruction=instruction) for t in texts]
        outs = []
        for g in self.engine.run(prompts, opts):
            segs = [s for s in self._segments(g) if isinstance(s, ImageSegment)]
            if not segs:
                raise AromniError(f"no image was generated (stop: {g.stop_reason})")
            codes = [int(c) for c in segs[0].codes]
            outs.append(ImageOutput(media.codes_to_image(self.image, codes), codes, g.tokens, g.stop_reason,
                                    segs[0].complete, time.perf_counter() - t0))
        return outs[0] if single else outs

    def chat(self, *, options: OptionsArg = None, seed: int | None = None,
             **kwargs: str | int | None) -> ChatSession:
        """A multi-turn :class:`~aromni.inference.chat.ChatSession` (official chat format and settings)."""
        unknown = sorted(set(kwargs) - {"append_text", "reserve_tokens"})
        if unknown:
            raise ConfigError(f"unknown chat settings {unknown}", "known: options, seed, append_text, reserve_tokens")
        return ChatSession(self, self._resolve(CHAT, options, seed=seed), **kwargs)

    def _check_texts(self, texts: Sequence[str], instruction: object, context: int) -> None:
        for i, t in enumerate(texts):
            self.check_text(t, "text" if len(texts) == 1 else f"text {i}", context)
        if instruction is not None:
            self.check_text(instruction, "instruction", context, allow_empty=True)

    def decode_segments(self, segments: Sequence[Segment]) -> list[tuple[Segment, Decoded]]:
        """Decode image and speech segments: ``[(segment, decoded)]`` with PIL images and waveforms."""
        if isinstance(segments, (str, bytes)) or not isinstance(segments, Sequence):
            raise InputError(f"decode_segments takes a list of segments, got {type(segments).__name__}")
        out = []
        for s in segments:
            if isinstance(s, ImageSegment) and self.image is not None and len(s.codes):
                n = self.image.codes_per_image
                codes = list(s.codes)[:n]
                # As the official runner: an incomplete image is padded with its first code to a full grid.
                codes += [codes[0]] * (n - len(codes))
                out.append((s, media.codes_to_image(self.image, codes)))
            elif isinstance(s, SpeechSegment) and self.speech is not None and len(s.codes):
                out.append((s, media.codes_to_audio(self.speech, s.codes)))
            else:
                out.append((s, None))
        return out


def _check_mapping(options: object) -> None:
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"options must be a mapping such as {{'text': {{'temperature': 0.7}}}}, got "
                          f"{type(options).__name__} {options!r:.80}")


def _as_list(x: Any, what: str, *, strings: bool = False, seq_of_numbers_is_one: bool = False
             ) -> tuple[list[Any], bool]:
    """Inputs as a list and whether a single item was given (``strings``: every item must be a str)."""
    if isinstance(x, (str, Path)) or not isinstance(x, (list, tuple)) or (
            seq_of_numbers_is_one and x and all(isinstance(v, numbers.Number) for v in x)):
        items, single = [x], True
    else:
        items, single = list(x), False
    if not items:
        raise InputError(f"empty list of {what} inputs")
    if strings and not all(isinstance(i, str) for i in items):
        raise InputError(f"{what} must be a string or a list of strings")
    return items, single
