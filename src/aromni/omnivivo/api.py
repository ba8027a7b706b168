"""OmniVIVO for users: one call from captions to images, narration audio and timings.

::

    pipe = VivoPipeline.load("runs/speech/omnivivo", vq_dir="runs/vq/tokenizer")
    result = pipe.generate("a red circle at the top left", seed=0)
    result.image.save("circle.png")                  # PIL image (None without a VQ)
    result.audio, result.sample_rate                 # float32 [T] (CPU) and its rate
    result.timings.ftl, result.timings.rtf           # seconds from the request; RTF = speech time / audio

    stream = pipe.generate(["a red circle", "a blue square"], stream=True)
    for timed in stream:                             # TimedEvent(event, seconds since the request)
        ...                                          # SpeechCodes / SpeechAudio chunks while the image is drawn
    stream.results                                   # the same VivoResults, once the stream has ended

The export directory (``aromni omnivivo train``'s ``OUT/omnivivo``, read by
:func:`~aromni.training.recipes.omnivivo.load_vivo`) holds the model, its text conditioner and its speech
tokenizer, but not the image tokenizer: the VQ is passed separately (``vq_dir``: a ``LlamaGenVQ`` directory,
or LlamaGen's ``vq_ds16_t2i.pt``). Without it the results carry the image codes and no image.

Decoding is :func:`~aromni.omnivivo.vivo_generate.generate` (so the codes equal a direct call with the same
seeds), run with one-code speech events so the time of the first speech code is seen exactly. Audio is decoded
through the speech tokenizer's stream decoder (one per prompt, the house streaming protocol) in chunks of
``first_chunk_codes`` and then ``chunk_codes`` codes (:class:`~aromni.omnivivo.vivo_generate.SpeechChunker`):
the same chunks are yielded by a stream and concatenated into ``result.audio`` otherwise, so the streamed and
the non-streamed audio are the same (and equal the offline decode for an exact decoder, such as our codec).

Timings (:class:`VivoTimings`, seconds from the call, caption encoding included):

* ``image_seconds``: every image of the batch drawn and VQ-decoded (the images are drawn together);
* ``ftl``: the prompt's first speech code reached the host;
* ``first_audio``: its first non-empty audio chunk left the stream decoder;
* ``speech_seconds``: its last audio sample left the decoder (the utterance is complete);
* ``rtf``: ``speech_seconds / audio_seconds`` (below 1: faster than real time).
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from aromni.errors import AromniError, CheckpointError, InputError
from aromni.omnivivo.ras import SpeechSampling
from aromni.omnivivo.t2i_generate import T2ISampling
from aromni.omnivivo.text_conditioner import check_texts
from aromni.omnivivo.vivo_generate import (
    ImageDone,
    SpeechAudio,
    SpeechChunker,
    SpeechCodes,
    VivoEvent,
    generate,
)
from aromni.omnivivo.vivo_model import VivoModel
from aromni.tokenizers.image.llamagen_vq import LlamaGenVQ
from aromni.training.recipes.omnivivo import LoadedVivo, load_vivo
from aromni.utils.device import resolve_device
from aromni.utils.io import JSONValue, path_kind

if TYPE_CHECKING:  # Pillow is an optional extra
    from PIL import Image

#: Default audio chunking: a small first chunk (low latency), then larger ones (fewer decoder calls).
FIRST_CHUNK_CODES, CHUNK_CODES = 4, 20
_VQ_HINT = "pass the tokenizer/ directory of `aromni llamagen vq-train`, or LlamaGen's vq_ds16_t2i.pt"


# ---------------------------------------------------------------------------------------------- results
@dataclass
class VivoTimings:
    """One prompt's latencies in seconds from the request (module docstring); ``None``: it did not happen."""

    image_seconds: float | None = None
    ftl: float | None = None
    first_audio: float | None = None
    speech_seconds: float | None = None
    audio_seconds: float = 0.0

    @property
    def rtf(self) -> float | None:
        """Synthesis time (request to the last sample) / audio duration."""
        if self.speech_seconds is None or self.audio_seconds <= 0:
            return None
        return self.speech_seconds / self.audio_seconds

    def to_dict(self) -> dict[str, JSONValue]:
        return {"image_seconds": self.image_seconds, "ftl": self.ftl, "first_audio": self.first_audio,
                "speech_seconds": self.speech_seconds, "audio_seconds": self.audio_seconds, "rtf": self.rtf}


@dataclass
class VivoResult:
    """One prompt's image and narration.

    Attributes:
        prompt: the caption.
        image: the decoded image (PIL, LlamaGen's uint8 rule), ``None`` without a VQ.
        image_codes: ``[block_size]`` int64 codes in raster order (CPU).
        audio: ``[T]`` float32 waveform (CPU) at ``sample_rate``.
        speech_codes: ``[n]`` int64 speech codes (EOS excluded).
        stop_reason: ``"eos"`` or ``"max_len"``.
    """

    prompt: str
    image: Image.Image | None
    image_codes: torch.Tensor
    audio: torch.Tensor
    sample_rate: int
    speech_codes: torch.Tensor
    stop_reason: str | None
    timings: VivoTimings

    @property
    def seconds(self) -> float:
        """Duration of the audio."""
        return self.audio.numel() / self.sample_rate


@dataclass(frozen=True)
class TimedEvent:
    """A decoding event (:class:`SpeechCodes`, :class:`SpeechAudio` or :class:`ImageDone`) and when it was
    ready, in seconds from the request. Audio is float32 on the CPU."""

    event: VivoEvent
    time: float


# ---------------------------------------------------------------------------------------------- the stream
@dataclass
class _Collected:
    """What one prompt has produced so far."""

    codes: list[torch.Tensor] = field(default_factory=list)
    audio: list[torch.Tensor] = field(default_factory=list)
    reason: str | None = None
    timings: VivoTimings = field(default_factory=VivoTimings)


class VivoStream:
    """Iterator of :class:`TimedEvent` for one :meth:`VivoPipeline.generate` call; :attr:`results` (one
    :class:`VivoResult` per prompt) is complete once it is exhausted. Iterate it once; a model runs one stream
    at a time (the caches are the model's), and leaving a stream early (``break``) ends its run."""

    def __init__(self, pipeline: VivoPipeline, prompts: list[str], source: Generator[VivoEvent, None, None],
                 t_start: float, *, first_chunk_codes: int, chunk_codes: int):
        self.pipeline, self.prompts, self.t_start = pipeline, prompts, t_start
        self._source, self._chunk = source, chunk_codes
        tok = pipeline.speech_tokenizer
        # One chunker per prompt: each starts with the small first chunk, then switches to chunk_codes.
        self._chunkers = [SpeechChunker(first_chunk_codes, {p: tok.stream_decoder(1)}) for p in range(len(prompts))]
        self._rows = [_Collected() for _ in prompts]
        self._image: ImageDone | None = None
        self._results: list[VivoResult] | None = None
        self._started = False
        self.exact = bool(self._chunkers[0].decoders[0].exact)  # the streamed audio equals the offline decode

    @property
    def results(self) -> list[VivoResult]:
        if self._results is None:
            raise AromniError("the stream has not ended: its results are not complete",
                              "iterate the stream to its end first")
        return self._results

    def _now(self) -> float:
        return time.perf_counter() - self.t_start

    def __iter__(self) -> Iterator[TimedEvent]:
        if self._started:
            raise AromniError("this stream has already been iterated", "call generate again for another run")
        self._started = True
        return self._events()

    @torch.inference_mode()
    def _events(self) -> Iterator[TimedEvent]:
        try:
            for ev in self._source:
                now = self._now()
                if isinstance(ev, ImageDone):
                    self._image = ev
                    for row in self._rows:
                        row.timings.image_seconds = now
                    images = None if ev.images is None else ev.images.cpu()
                    yield TimedEvent(ImageDone(ev.codes.cpu(), images), now)
                    continue
                yield from self._speech(ev, now)
            self._results = self._finish()
        finally:
            # A stream left early frees the model's caches now, not when it is garbage collected (which could
            # happen in the middle of a later run on the same model and clear that run's caches).
            self._source.close()

    def _speech(self, ev: SpeechCodes, now: float) -> Iterator[TimedEvent]:
        """One code (or an utterance's end) from the loop -> the chunk events it completes."""
        p, row = ev.prompt, self._rows[ev.prompt]
        chunker = self._chunkers[p]
        codes = ev.codes.tolist()
        if codes and row.timings.ftl is None:
            row.timings.ftl = now
        if ev.final:
            out = chunker.finish(p, ev.reason or "eos", codes[0] if codes else None)
        else:
            out = [e for code in codes for e in chunker.add(p, code)]
        if any(isinstance(e, SpeechCodes) for e in out):
            chunker.chunk = self._chunk  # the first chunk has gone: the larger ones follow
        for e in out:
            yield self._record(e, row)

    def _record(self, ev: SpeechCodes | SpeechAudio, row: _Collected) -> TimedEvent:
        now, t = self._now(), row.timings
        if isinstance(ev, SpeechCodes):
            row.codes.append(ev.codes)
            row.reason = ev.reason if ev.final else row.reason
            return TimedEvent(ev, now)
        audio = ev.audio.float().cpu()
        row.audio.append(audio)
        t.audio_seconds += audio.numel() / self.pipeline.sample_rate
        if audio.numel() and t.first_audio is None:
            t.first_audio = now
        if ev.final:
            t.speech_seconds = now
        return TimedEvent(SpeechAudio(ev.prompt, audio, ev.final), now)

    def _finish(self) -> list[VivoResult]:
        image = self._image
        pil = None
        if image is not None and image.images is not None:
            pil = self.pipeline.vq.to_pil(image.images)
        empty = torch.zeros(0, dtype=torch.long)
        out = []
        for b, (prompt, row) in enumerate(zip(self.prompts, self._rows)):
            out.append(VivoResult(
                prompt=prompt, image=pil[b] if pil is not None else None,
                image_codes=image.codes[b].cpu() if image is not None else empty,
                audio=torch.cat(row.audio) if row.audio else torch.zeros(0),
                sample_rate=self.pipeline.sample_rate,
                speech_codes=torch.cat(row.codes) if row.codes else empty,
                stop_reason=row.reason, timings=row.timings))
        return out


# ---------------------------------------------------------------------------------------------- the pipeline
class VivoPipeline:
    """An exported OmniVIVO model with its conditioner, speech tokenizer and (optionally) its VQ, ready to draw.

    Build it with :meth:`load`; ``loaded`` is :func:`~aromni.training.recipes.omnivivo.load_vivo`'s result."""

    def __init__(self, loaded: LoadedVivo, vq: LlamaGenVQ | None = None):
        self.model: VivoModel = loaded.model.eval()
        self.conditioner = loaded.conditioner
        self.speech_tokenizer = loaded.speech_tokenizer
        self.config = loaded.config
        self.vq = vq
        if vq is not None:
            _check_vq_fits(vq, self.model)

    @classmethod
    def load(cls, export_dir: str | os.PathLike[str], vq_dir: str | os.PathLike[str] | None = None, *,
             device: str | torch.device | None = None) -> VivoPipeline:
        """Load the export ``export_dir`` (and the VQ at ``vq_dir``: a ``LlamaGenVQ`` directory or LlamaGen's
        ``.pt``) on ``device`` (default CPU).

        Raises:
            InputError: a directory or file that does not exist, a device this machine lacks.
            CheckpointError: an export or VQ that is malformed, or a VQ that does not fit the backbone.
        """
        export = _path(export_dir, "export_dir")
        if path_kind(export) != "dir":
            raise InputError(f"{export}: no such OmniVIVO export directory",
                             "pass the omnivivo/ directory that `aromni omnivivo train` wrote")
        vq_path = None if vq_dir is None else _path(vq_dir, "vq_dir")
        if vq_path is not None and path_kind(vq_path) not in ("file", "dir"):
            raise InputError(f"{vq_path}: no such VQ image tokenizer", _VQ_HINT)
        device = resolve_device(device)
        loaded = load_vivo(export, device=device)
        return cls(loaded, None if vq_path is None else load_vq(vq_path, device))

    @property
    def sample_rate(self) -> int:
        return int(self.speech_tokenizer.sample_rate)

    @property
    def device(self) -> torch.device:
        return self.model.backbone.output.weight.device

    def generate(self, prompts: str | Sequence[str], *, seed: int | Sequence[int] = 0,
                 image: T2ISampling | None = None, speech: SpeechSampling | None = None, stream: bool = False,
                 speech_seed: int | Sequence[int] | None = None, min_len: int | Sequence[int] | None = None,
                 max_len: int | Sequence[int] | None = None, first_chunk_codes: int = FIRST_CHUNK_CODES,
                 chunk_codes: int = CHUNK_CODES, progress: bool = False
                 ) -> VivoResult | list[VivoResult] | VivoStream:
        """Draw each prompt's image and speak it, in one loop.

        Args:
            prompts: a caption, or a list of them (one image and one utterance each).
            seed: image seed(s) as in ``generate`` (an int ``s``: ``s, s+1, ...``); speech_seed: the speech
                streams' (default: the image seeds + ``SPEECH_SEED_OFFSET``).
            image: LlamaGen's CFG sampling settings (default cfg 7.5, top-k 1000); speech: RAS settings.
            stream: return a :class:`VivoStream` of timed events instead of the results.
            min_len, max_len: speech codes per prompt (default: from the caption length).
            first_chunk_codes, chunk_codes: codes per audio chunk, the first one and the later ones.
            progress: a progress bar on a terminal.

        Returns:
            A :class:`VivoResult` for a single caption string, a list of them for a list, or (``stream``) a
            :class:`VivoStream` whose ``results`` is that list.

        Inputs are checked before any compute (:class:`InputError` naming the value).
        """
        texts = check_prompts(prompts)
        _check_settings(image, speech, first_chunk_codes, chunk_codes, stream, seed)
        t_start = time.perf_counter()
        with torch.inference_mode():
            feats, mask = self.conditioner.encode(texts)
        source = generate(self.model, feats, mask, image_sampling=image, speech_sampling=speech, seed=seed,
                          speech_seed=speech_seed, min_len=min_len, max_len=max_len, chunk_codes=1,
                          image_tokenizer=self.vq, progress=progress)
        events = VivoStream(self, texts, source, t_start, first_chunk_codes=first_chunk_codes,
                            chunk_codes=chunk_codes)
        if stream:
            return events
        for _ in events:
            pass
        return events.results[0] if isinstance(prompts, str) else events.results


# ---------------------------------------------------------------------------------------------- checks
def check_prompts(prompts: object) -> list[str]:
    """A caption or a list of captions as a list of non-blank strings, or :class:`InputError`."""
    texts = [prompts] if isinstance(prompts, str) else prompts
    if isinstance(texts, (list, tuple)) and len(texts) == 0:
        raise InputError("no prompts (an empty list)", "pass a caption or a list of captions")
    texts = check_texts(texts)
    for i, text in enumerate(texts):
        if not text.strip():
            raise InputError(f"prompt {i} is empty", "describe the image to draw and speak, e.g. 'a red circle'")
    return texts


def _check_settings(image: object, speech: object, first_chunk_codes: object, chunk_codes: object, stream: object,
                    seed: object) -> None:
    if image is not None and not isinstance(image, T2ISampling):
        raise InputError(f"image must be a T2ISampling, got {type(image).__name__}", "e.g. T2ISampling(cfg_scale=4)")
    if speech is not None and not isinstance(speech, SpeechSampling):
        raise InputError(f"speech must be a SpeechSampling, got {type(speech).__name__}",
                         "e.g. SpeechSampling(top_p=0.8)")
    for name, v in (("first_chunk_codes", first_chunk_codes), ("chunk_codes", chunk_codes)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{name} must be an integer >= 1, got {v!r}")
    if not isinstance(stream, bool):
        raise InputError(f"stream must be True or False, got {stream!r}")
    seeds = [seed] if isinstance(seed, int) else seed if isinstance(seed, (list, tuple)) else None
    if seeds is None or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**63 for s in seeds):
        raise InputError(f"seed must be an integer in [0, 2^63) or a list of them, got {seed!r}")


def _path(value: object, what: str) -> Path:
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not str(value):
        raise InputError(f"{what} must be a path, got {value!r}")
    return Path(value)


def load_vq(path: Path, device: torch.device) -> LlamaGenVQ:
    """The frozen VQ at ``path``: a ``LlamaGenVQ.save_pretrained`` directory or a LlamaGen ``.pt`` file."""
    if path.is_dir():
        vq = LlamaGenVQ.from_pretrained(path, device=device)
    else:
        vq = LlamaGenVQ.from_llamagen(path, device=device)
    return vq.eval().requires_grad_(False)


def _check_vq_fits(vq: LlamaGenVQ, model: VivoModel) -> None:
    cfg = model.backbone.cfg
    if vq.codebook_size != cfg.vocab_size:
        raise CheckpointError(f"the VQ has {vq.codebook_size} codes, the backbone draws from {cfg.vocab_size}",
                              "pass the VQ the backbone was trained with")
    if vq.codes_per_image != cfg.block_size:
        raise CheckpointError(f"the VQ makes {vq.codes_per_image} codes per image (grid {vq.grid}), the backbone "
                              f"draws {cfg.block_size}", "pass the VQ (and image size) the backbone was trained with")
