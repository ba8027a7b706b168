"""Batched generation for the suite: prompts -> typed outputs, one seed per sample, and the task policies.

Each sample gets its own seed (``DecodeOptions.seed`` as a list), so its output depends only on its prompt, its
seed and the options, never on which other samples share its batch.

Policies (on top of the bundle's saved defaults, :func:`~aromni.inference.options.task_options`):

* ``asr``, ``tts``, ``caption``, ``t2i``: the engine's task policies (greedy for ASR/TTS/captions; T2I samples
  image codes with classifier-free guidance and stops after its image);
* ``t2i_nocfg``: the T2I policy without guidance (one row per image);
* ``answer_text`` / ``answer_speech``: replies in text or speech (VQA, exchanges, the second chat turn): the
  chat policy with greedy text (the official selector decodes speech greedily anyway) and images disallowed, as
  in every non-image task policy of the engine; they differ only in the length cap;
* ``s2i``: transcript then image: greedy text as ASR, image codes sampled with CFG as T2I.

Every policy gets a length cap (``max_new_tokens``) sized from the world: an untrained model that never stops
would otherwise run to the context length.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from aromni.inference.events import SegmentAssembler
from aromni.inference.media import codes_to_audio, codes_to_image
from aromni.inference.omni import OmniModel
from aromni.inference.options import DecodeOptions
from aromni.inference.streaming import SpeechStreamer
from aromni.utils.io import JSONValue
from aromni.vocab.conversation import ImageSegment, SpeechSegment, TextSegment
from aromni.vocab.tasks import ASR, CAPTION, CHAT, S2I, T2I, TTS

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: Suite policies that are variants rather than a task's own settings.
T2I_NOCFG, ANSWER_TEXT, ANSWER_SPEECH = "t2i_nocfg", "answer_text", "answer_speech"
#: Every suite policy: a task's name (its settings) or a variant above.
POLICIES = (ASR.name, TTS.name, CAPTION.name, T2I.name, T2I_NOCFG, ANSWER_TEXT, ANSWER_SPEECH, S2I.name)


@dataclass
class Caps:
    """Length caps in tokens: text replies, speech replies (from seconds of audio)."""

    text_tokens: int = 64
    speech_seconds: float = 6.0


def policy_options(model: OmniModel, policy: str, caps: Caps) -> DecodeOptions:
    """The :class:`DecodeOptions` of a suite policy for ``model`` (see the module docstring)."""
    n_img = model.engine.image_tokens or 0
    speech = int(caps.speech_seconds * model.speech.frame_rate) + 8 if model.speech is not None else 0
    if policy in (ASR.name, CAPTION.name):
        return model.options(policy, {"max_new_tokens": caps.text_tokens})
    if policy == TTS.name:
        return model.options(TTS.name, {"max_new_tokens": speech})
    if policy == T2I.name:
        return model.options(T2I.name)
    if policy == T2I_NOCFG:
        return model.options(T2I.name, {"image": {"cfg": False}})
    if policy in (ANSWER_TEXT, ANSWER_SPEECH):
        cap = caps.text_tokens if policy == ANSWER_TEXT else speech + 8
        return model.options(CHAT.name, {"text": {"greedy": True}, "allow_image": False, "max_new_tokens": cap})
    if policy == S2I.name:
        return model.options(CHAT.name, {"text": {"greedy": True}, "max_new_tokens": caps.text_tokens + n_img + 2})
    raise ValueError(f"unknown policy {policy!r}; one of {POLICIES}")


@dataclass
class Output:
    """A generated reply, split by modality.

    Attributes:
        text: the text segments joined (stripped).
        image: codes of the first image, or ``None`` when no complete image was generated.
        speech: the codes of every speech segment, concatenated.
        stop_reason: the engine's stop reason.
        tokens: generated ids.
        prompt_tokens: prompt length.
    """

    text: str
    image: list[int] | None
    speech: list[int]
    stop_reason: str | None
    tokens: list[int] = field(repr=False)
    prompt_tokens: int = 0


def parse_generation(model: OmniModel, prompt: Sequence[int], tokens: Sequence[int], stop_reason: str | None) -> Output:
    asm = SegmentAssembler(model.layout, model.text, image_tokens=model.engine.image_tokens)
    asm.resume_from(prompt)  # T2I prompts end in <boi>: the codes continue that span
    segs = asm.feed(tokens)
    text = "".join(s.text for s in segs if isinstance(s, TextSegment)).strip()
    images = [s for s in segs if isinstance(s, ImageSegment)]
    image = [int(c) for c in images[0].codes] if images and images[0].complete else None
    speech = [int(c) for s in segs if isinstance(s, SpeechSegment) for c in s.codes]
    return Output(text, image, speech, stop_reason, list(tokens), len(prompt))


def generate(model: OmniModel, prompts: Sequence[Sequence[int]], options: DecodeOptions, seeds: Sequence[int], *,
             batch_size: int = 8, on_batch: Callable[[int], None] | None = None) -> list[Output]:
    """Generate for every prompt in batches of ``batch_size`` (prompts sorted by length to pad less)."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[Output | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        opts = options.replace(seed=[int(seeds[i]) for i in idx])
        for i, g in zip(idx, model.engine.run([prompts[i] for i in idx], opts)):
            out[i] = parse_generation(model, g.prompt, g.tokens, g.stop_reason)
        if on_batch is not None:
            on_batch(len(idx))
    return [o for o in out if o is not None]


@torch.no_grad()
def decode_image(model: OmniModel, codes: Sequence[int] | None) -> PILImage | None:
    """Codes -> PIL image (``None`` stays ``None``)."""
    return None if codes is None else codes_to_image(model.image, codes)


@torch.no_grad()
def decode_speech(model: OmniModel, codes: Sequence[int]) -> torch.Tensor:
    """Codes -> waveform ``[T]`` (empty for no codes)."""
    return codes_to_audio(model.speech, list(codes))


@torch.no_grad()
def resynthesize(model: OmniModel, wav: torch.Tensor) -> torch.Tensor:
    """A waveform ``[T]`` through the bundle's codec (encode, then decode)."""
    p = next(model.speech.parameters(), None)
    x = wav.to(p.device if p is not None else "cpu")[None]
    return model.speech.decode(model.speech.encode(x))[0].float().cpu()


@torch.no_grad()
def reconstruct_images(model: OmniModel, images: Sequence[PILImage]) -> list[PILImage]:
    """PIL images through the bundle's VQGAN (encode, then decode)."""
    if not images:
        return []
    codes = model.image.encode(list(images))
    return [codes_to_image(model.image, c.tolist()) for c in codes]


def stream_speech(model: OmniModel, make_prompt: Callable[[], list[int]], options: DecodeOptions, *,
                  first_chunk_frames: int = 4, chunk_frames: int = 20) -> tuple[torch.Tensor, dict[str, JSONValue]]:
    """One request through the streaming path (:class:`~aromni.inference.streaming.SpeechStreamer`): the clock
    starts before ``make_prompt`` runs, as in ``OmniModel.tts``. Returns the audio (every chunk, concatenated)
    and the latency figures of :class:`~aromni.inference.streaming.StreamMetrics`."""
    t0 = time.perf_counter()
    gen = model.engine.generate([make_prompt()], options)
    streamer = SpeechStreamer(gen, model.speech, model.layout, first_chunk_frames=first_chunk_frames,
                              chunk_frames=chunk_frames, t_start=t0)
    with torch.no_grad():
        chunks = [c.audio for c in streamer]
    audio = torch.cat(chunks) if chunks else torch.zeros(0)
    return audio, streamer.metrics[0].to_dict()
