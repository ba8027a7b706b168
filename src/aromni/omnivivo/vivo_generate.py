"""OmniVIVO's one decoding loop: B prompts' images and speech drawn in parallel, gpt-fast style (omnivivo.md
§4.5): :func:`prefill` runs the caption prefix, :func:`decode_one_step` feeds one token per row, :func:`sample_step`
draws the next ones, :func:`generate` is the streaming iterator around them.

Rows: ``[0:B]`` image-conditional, ``[B:2B]`` image-unconditional (prefix from ``uncond_embedding``, the same
caption mask; only when guided), then one speech row per prompt still speaking. Image rows run with LoRA off and
LlamaGen's 2-D table, speech rows with LoRA on and the speech table, in ONE backbone call per token; the speech
rows' tapped states then go through the branch (its own cache), the head and RAS.

* **Image stream**: LlamaGen's CFG sampler (:func:`~aromni.omnivivo.t2i_generate.sample_codes`, defaults cfg 7.5,
  top-k 1000) for exactly ``block_size`` codes, one generator per image, seeded as ``generate_images`` seeds it.
* **Speech stream**: RAS (:mod:`~aromni.omnivivo.ras`) from separate generators (default seeds: the image seeds
  plus :data:`SPEECH_SEED_OFFSET`), EOS masked before ``min_len``, stop at EOS or after ``max_len`` codes.
* **Preservation**: image rows compute exactly LlamaGen's function (LoRA off rows are bit-identical, each row
  has its own cache and RoPE, its own random stream), so the image codes equal ``generate_images`` on the bare
  backbone with the same seeds, whether or not speech rows run beside them (tested on CPU; on an accelerator it
  also needs batch-size-invariant matmul kernels).
* **No wasted rows**: when a prompt's speech ends its row leaves the backbone cache, the branch cache, the masks
  and the RoPE rows; when the image stream ends the image rows leave. The next step computes only live rows.
* **Streaming**: :func:`generate` yields :class:`SpeechCodes` chunks as they are drawn (and :class:`SpeechAudio`
  through the house streaming protocol when decoders are given), and :class:`ImageDone` when the image stream
  completes, so speech is heard while the image is still being drawn.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from aromni.errors import InputError
from aromni.inference.sampling import make_generators
from aromni.omnivivo.ras import SpeechSampling, mask_eos, ras_sample
from aromni.omnivivo.t2i_config import find_multiple
from aromni.omnivivo.t2i_generate import T2ISampling, eval_mode, sample_codes
from aromni.omnivivo.t2i_rope import row_tables
from aromni.omnivivo.vivo_model import VivoModel, check_captions
from aromni.tokenizers.base import ImageTokenizer, SpeechTokenizer
from aromni.tokenizers.streaming import SpeechStreamDecoder

#: Default speech seed of prompt ``b``: its image seed plus this (separate streams for the two modalities).
SPEECH_SEED_OFFSET = 1_000_003


# ---------------------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class SpeechCodes:
    """Speech codes ``[n]`` (int64 on the CPU, in ``[0, K)``, EOS never included) of prompt ``prompt``, in order.
    The last chunk of an utterance has ``final=True`` and ``reason`` ``"eos"`` or ``"max_len"`` (it is empty when
    EOS follows a full chunk)."""

    prompt: int
    codes: torch.Tensor
    final: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class SpeechAudio:
    """Audio ``[m]`` of prompt ``prompt`` from its stream decoder; ``final=True`` on the flushed tail."""

    prompt: int
    audio: torch.Tensor
    final: bool = False


@dataclass(frozen=True)
class ImageDone:
    """All images: ``codes [B, block_size]`` (raster order) and ``images [B, 3, H, W]`` when a tokenizer decodes."""

    codes: torch.Tensor
    images: torch.Tensor | None = None


VivoEvent = SpeechCodes | SpeechAudio | ImageDone


@dataclass
class VivoOutput:
    """Everything one run produced (:func:`collect`)."""

    image_codes: torch.Tensor | None = None
    images: torch.Tensor | None = None
    speech_codes: list[torch.Tensor] = field(default_factory=list)
    speech_reasons: list[str | None] = field(default_factory=list)
    audio: list[torch.Tensor] = field(default_factory=list)


def collect(events: Iterable[VivoEvent], n_prompts: int) -> VivoOutput:
    """Concatenate a run's events per prompt."""
    out = VivoOutput(speech_reasons=[None] * n_prompts)
    codes: list[list[torch.Tensor]] = [[] for _ in range(n_prompts)]
    audio: list[list[torch.Tensor]] = [[] for _ in range(n_prompts)]
    for ev in events:
        if isinstance(ev, ImageDone):
            out.image_codes, out.images = ev.codes, ev.images
        elif isinstance(ev, SpeechCodes):
            codes[ev.prompt].append(ev.codes)
            out.speech_reasons[ev.prompt] = ev.reason if ev.final else out.speech_reasons[ev.prompt]
        else:
            audio[ev.prompt].append(ev.audio)
    empty = torch.zeros(0, dtype=torch.long)
    out.speech_codes = [torch.cat(c) if c else empty for c in codes]
    out.audio = [torch.cat(a) if a else torch.zeros(0) for a in audio]
    return out


# ---------------------------------------------------------------------------------------------- run state
class JointRun:
    """Row layout, caches and per-row state of one joint decoding run (:func:`generate` builds it from checked
    inputs; the constructor allocates the backbone's and the branch's caches, :meth:`close` frees them).

    Args:
        feats, mask: ``[B, L, caption_dim]`` left-padded captions and ``[B, L]`` bool mask, on the model's device.
        image: draw the images; speech_prompts: the prompts whose speech is drawn (rows in this order).
        image_generators: one per prompt; speech_generators: one per prompt (indexed by prompt).
        min_len, max_len: speech length limits, one per prompt.

    Attributes:
        image_rows: live image rows (``2B`` guided, ``B`` unguided, 0 once the image stream ended).
        speech_prompts: the prompt of each live speech row, in row order.
        image_codes: ``[B, block_size]`` codes drawn so far (``n_image`` of them).
        history: ``[len(speech_prompts), max_len]`` speech codes drawn so far (``n_speech`` per live row).
        min_len, max_len: per live speech row.
        row_mask: ``[R, L]`` caption mask of every live row; rope: ``[S, P, 2]`` or ``[R, S, P, 2]``.
        input_pos: ``[1]`` the slot the next fed token takes.
    """

    def __init__(self, model: VivoModel, feats: torch.Tensor, mask: torch.Tensor, *, image: bool,
                 speech_prompts: list[int], image_sampling: T2ISampling, speech_sampling: SpeechSampling,
                 image_generators: list[torch.Generator], speech_generators: list[torch.Generator],
                 min_len: list[int], max_len: list[int]):
        backbone, device = model.backbone, feats.device
        self.model, self.feats, self.mask = model, feats, mask
        self.image_sampling, self.speech_sampling = image_sampling, speech_sampling
        self.B, self.L = feats.shape[0], backbone.cfg.cls_token_num
        self.block_size = backbone.cfg.block_size
        self.guided = image_sampling.guided  # image rows come as cond + uncond halves
        self.image_rows = (2 * self.B if self.guided else self.B) if image else 0
        self.image_generators = image_generators
        self.image_codes = torch.empty(self.B, self.block_size, dtype=torch.long, device=device) if image else None
        self.n_image = 0
        self.speech_prompts = speech_prompts
        self.speech_generators = [speech_generators[p] for p in speech_prompts]
        self.min_len = torch.tensor([min_len[p] for p in speech_prompts], dtype=torch.long, device=device)
        self.max_len = [max_len[p] for p in speech_prompts]
        self.history = torch.zeros(len(speech_prompts), max(self.max_len, default=0), dtype=torch.long,
                                   device=device)
        self.n_speech = 0
        longest = max(self.block_size if image else 0, max(self.max_len, default=0))
        slots = find_multiple(self.L + longest, 8)  # generate_images' size when the image is the longest stream
        backbone.setup_caches(self.image_rows + len(speech_prompts), slots)
        if speech_prompts:
            model.branch.setup_caches(len(speech_prompts), slots)
        self.input_pos = torch.tensor([self.L], device=device)
        self._layout()

    @property
    def done(self) -> bool:
        return self.image_rows == 0 and not self.speech_prompts

    def _layout(self) -> None:
        """Per-row caption masks and RoPE tables of the live rows."""
        backbone, device = self.model.backbone, self.feats.device
        n_speech = len(self.speech_prompts)
        image_mask = torch.cat([self.mask, self.mask]) if self.guided else self.mask
        speech_mask = self.mask[torch.tensor(self.speech_prompts, dtype=torch.long, device=device)]
        self.row_mask = torch.cat([image_mask[: self.image_rows], speech_mask])
        image_table, speech_table = backbone.rope_table(device), self.model.speech_rope_table(device)
        if n_speech == 0 or self.image_rows == 0:
            self.rope = image_table if n_speech == 0 else speech_table
        else:
            group = torch.cat([torch.zeros(self.image_rows), torch.ones(n_speech)]).long().to(device)
            self.rope = row_tables([image_table, speech_table])[group]  # [R, S, P, 2]

    def drop_image_rows(self) -> None:
        """The image stream ended: keep only the speech rows."""
        rows = torch.arange(self.image_rows, self.image_rows + len(self.speech_prompts), device=self.feats.device)
        if len(rows):
            self.model.backbone.keep_cache_rows(rows)
        self.image_rows = 0
        self._layout()

    def keep_speech_rows(self, keep: list[int]) -> None:
        """Keep the speech rows ``keep`` (indices among the live speech rows) and drop the finished ones."""
        device = self.feats.device
        sel = torch.tensor(keep, dtype=torch.long, device=device)
        if self.image_rows + len(keep):
            self.model.backbone.keep_cache_rows(torch.cat([torch.arange(self.image_rows, device=device),
                                                           self.image_rows + sel]))
        if keep:
            self.model.branch.keep_cache_rows(sel)
        self.speech_prompts = [self.speech_prompts[i] for i in keep]
        self.speech_generators = [self.speech_generators[i] for i in keep]
        self.max_len = [self.max_len[i] for i in keep]
        self.min_len, self.history = self.min_len[sel], self.history[sel]
        self._layout()

    def close(self) -> None:
        self.model.backbone.clear_caches()
        self.model.branch.clear_caches()


# ---------------------------------------------------------------------------------------------- steps
StepLogits = tuple[torch.Tensor | None, torch.Tensor | None]


def prefill(model: VivoModel, run: JointRun) -> StepLogits:
    """Run the caption prefix of every row -> ``(image logits [image_rows, V] | None, speech logits [B_s, K+1] |
    None)`` at the last caption slot. The image rows' embeddings are computed exactly as ``t2i_generate.prefill``
    computes them."""
    backbone, parts = model.backbone, []
    if run.image_rows:
        feats = run.feats
        if run.guided:
            feats = torch.cat([feats, backbone.null_captions(run.B).to(feats.dtype)])
        parts.append(backbone.caption_embeddings(feats))
    if run.speech_prompts:
        parts.append(backbone.caption_embeddings(run.feats[run.speech_prompts]))
    x = torch.cat(parts)
    pos = torch.arange(run.L, device=x.device)
    return model.joint_forward(x, pos, n_image=run.image_rows, rope=run.rope, caption_mask=run.row_mask)


def decode_one_step(model: VivoModel, run: JointRun, image_codes: torch.Tensor | None,
                    speech_codes: torch.Tensor | None) -> StepLogits:
    """Feed ``image_codes [B]`` (to both CFG halves) and ``speech_codes [B_s]`` at slot ``run.input_pos``, advance
    it, and return the next logits (as :func:`prefill`)."""
    parts = []
    if image_codes is not None:
        codes = torch.cat([image_codes, image_codes]) if run.guided else image_codes
        parts.append(model.backbone.tok_embeddings(codes[:, None]))
    if speech_codes is not None:
        parts.append(model.branch.embed(speech_codes[:, None]))
    logits = model.joint_forward(torch.cat(parts), run.input_pos, n_image=run.image_rows, rope=run.rope,
                                 caption_mask=run.row_mask)
    run.input_pos += 1
    return logits


def sample_step(run: JointRun, logits: StepLogits) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Image codes ``[B]`` (CFG sampler) and speech codes ``[B_s]`` (EOS masked before ``min_len``, then RAS)."""
    image_logits, speech_logits = logits
    image = None if image_logits is None else sample_codes(image_logits, run.image_sampling, run.image_generators)
    speech = None
    if speech_logits is not None:
        allow_eos = run.min_len <= run.n_speech
        speech_logits = mask_eos(speech_logits, allow_eos, run.model.cfg.eos)
        speech = ras_sample(speech_logits, run.history[:, : run.n_speech], run.speech_sampling,
                            run.speech_generators)
    return image, speech


# ---------------------------------------------------------------------------------------------- streaming
class SpeechChunker:
    """Pending speech codes per prompt -> :class:`SpeechCodes` chunks of ``chunk`` codes, and audio through the
    prompts' stream decoders (``{prompt: decoder}``, batch size 1 each)."""

    def __init__(self, chunk: int, decoders: dict[int, SpeechStreamDecoder]):
        self.chunk, self.decoders = chunk, decoders
        self.pending: dict[int, list[int]] = {}

    def add(self, prompt: int, code: int) -> list[VivoEvent]:
        self.pending.setdefault(prompt, []).append(code)
        return self._emit(prompt) if len(self.pending[prompt]) >= self.chunk else []

    def finish(self, prompt: int, reason: str, last: int | None = None) -> list[VivoEvent]:
        """End ``prompt``'s utterance (with its ``last`` code, if any): the final chunk, then the audio tail. An
        utterance that ends by EOS right after a full chunk ends with an empty final chunk."""
        if last is not None:
            self.pending.setdefault(prompt, []).append(last)
        events = self._emit(prompt, reason)
        decoder = self.decoders.get(prompt)
        if decoder is not None:
            events.append(SpeechAudio(prompt, decoder.flush()[0], final=True))
        return events

    def _emit(self, prompt: int, reason: str | None = None) -> list[VivoEvent]:
        codes = torch.tensor(self.pending.pop(prompt, []), dtype=torch.long)
        events: list[VivoEvent] = [SpeechCodes(prompt, codes, reason is not None, reason)]
        decoder = self.decoders.get(prompt)
        if decoder is not None and codes.numel():
            audio = decoder.push(codes[None])
            if audio.shape[-1]:
                events.append(SpeechAudio(prompt, audio[0]))
        return events


def advance(run: JointRun, image: torch.Tensor | None, speech: torch.Tensor | None, streams: SpeechChunker,
            image_tokenizer: ImageTokenizer | None = None
            ) -> tuple[list[VivoEvent], torch.Tensor | None, torch.Tensor | None]:
    """Record one step's codes, end the streams that are complete (shrinking the rows), and return ``(events,
    image codes to feed, speech codes to feed)`` (``None`` for an ended stream)."""
    events: list[VivoEvent] = []
    if speech is not None:
        ids, t = speech.tolist(), run.n_speech  # the one host sync of a step: EOS decides the loop
        run.history[:, t] = speech
        run.n_speech += 1
        keep = []
        for row, (prompt, tok) in enumerate(zip(run.speech_prompts, ids)):
            if tok == run.model.cfg.eos:
                events += streams.finish(prompt, "eos")
            elif t + 1 >= run.max_len[row]:
                events += streams.finish(prompt, "max_len", last=tok)
            else:
                events += streams.add(prompt, tok)
                keep.append(row)
        if len(keep) < len(ids):
            run.keep_speech_rows(keep)
            speech = speech[keep] if keep else None
    if image is not None:
        run.image_codes[:, run.n_image] = image
        run.n_image += 1
        if run.n_image == run.block_size:
            images = None if image_tokenizer is None else image_tokenizer.decode(run.image_codes)
            events.append(ImageDone(run.image_codes, images))
            run.drop_image_rows()
            image = None
    return events, image, speech


# ---------------------------------------------------------------------------------------------- the loop
def generate(model: VivoModel, feats: torch.Tensor, mask: torch.Tensor | None = None, *, image: bool = True,
             speech: bool = True, image_sampling: T2ISampling | None = None,
             speech_sampling: SpeechSampling | None = None, seed: int | Sequence[int] = 0,
             speech_seed: int | Sequence[int] | None = None, min_len: int | Sequence[int] | None = None,
             max_len: int | Sequence[int] | None = None, chunk_codes: int = 25,
             speech_decoder: SpeechTokenizer | Sequence[SpeechStreamDecoder] | None = None,
             image_tokenizer: ImageTokenizer | None = None, progress: bool = True) -> Iterator[VivoEvent]:
    """Draw B prompts' images and speech in one loop, streaming events (module docstring). Inputs are checked
    here, before anything is allocated; the caches live while the returned iterator runs.

    Args:
        model: the OmniVIVO model (run in eval mode while iterating; its mode comes back after).
        feats: ``[B, cls_token_num, caption_dim]`` LEFT-padded caption features; mask ``[B, cls_token_num]``.
        image, speech: which streams to draw (speech only is plain TTS; image only equals ``generate_images``).
        image_sampling: LlamaGen's CFG sampler settings (default cfg 7.5, top-k 1000).
        speech_sampling: RAS settings (default CosyVoice2's).
        seed: one seed per image, or ``s`` meaning ``s, s+1, ...`` (as ``generate_images``).
        speech_seed: one seed per prompt, or an int as ``seed``; default: image seeds + ``SPEECH_SEED_OFFSET``.
        min_len, max_len: speech codes per prompt (an int for all, or one per prompt); default from the
            caption length (``VivoConfig.length_limits``). At most ``max_speech_len``.
        chunk_codes: speech codes per :class:`SpeechCodes` event (the last chunk may be shorter).
        speech_decoder: a speech tokenizer (one ``stream_decoder(1)`` per prompt) or one streaming decoder per
            prompt (batch 1): audio chunks come as :class:`SpeechAudio` events.
        image_tokenizer: decodes the codes in :class:`ImageDone`.
        progress: show a progress bar (only on a terminal).

    Returns:
        An iterator of :class:`SpeechCodes`, :class:`SpeechAudio` and one :class:`ImageDone` (when ``image``),
        in the order they become final.
    """
    if not isinstance(model, VivoModel):
        raise InputError(f"generate needs a VivoModel, got {type(model).__name__}")
    check_captions(model.backbone.cfg, feats, mask)
    if not (image or speech):
        raise InputError("nothing to generate: image and speech are both off", "turn on at least one stream")
    if isinstance(chunk_codes, bool) or not isinstance(chunk_codes, int) or chunk_codes < 1:
        raise InputError(f"chunk_codes must be an integer >= 1, got {chunk_codes!r}")
    B, device = feats.shape[0], model.backbone.output.weight.device
    mask = torch.ones(feats.shape[:2], dtype=torch.bool) if mask is None else mask.bool()
    image_seeds = _seeds(seed, B, "seeds")
    speech_seeds = [s + SPEECH_SEED_OFFSET for s in image_seeds] if speech_seed is None \
        else _seeds(speech_seed, B, "speech seeds")
    lo, hi = _length_limits(model, mask, min_len, max_len)
    if image_tokenizer is not None and image_tokenizer.codes_per_image != model.backbone.cfg.block_size:
        raise InputError(f"the image tokenizer makes {image_tokenizer.codes_per_image} codes per image, the "
                         f"backbone draws {model.backbone.cfg.block_size}", "use the backbone's VQ tokenizer")
    streams = SpeechChunker(chunk_codes, _decoders(model, speech_decoder, B) if speech else {})
    plan = {"image": image, "speech_prompts": [b for b in range(B) if hi[b] > 0] if speech else [],
            "image_sampling": image_sampling or T2ISampling(),
            "speech_sampling": speech_sampling or SpeechSampling(),
            "image_generators": make_generators(image_seeds, device),
            "speech_generators": make_generators(speech_seeds, device), "min_len": lo, "max_len": hi}
    ended = [b for b in range(B) if speech and hi[b] == 0]  # a length limit of 0 ends before it starts
    return _loop(model, feats.to(device), mask.to(device), plan, ended, streams, image_tokenizer, progress)


@torch.inference_mode()
def _loop(model: VivoModel, feats: torch.Tensor, mask: torch.Tensor, plan: dict[str, object], ended: list[int],
          streams: SpeechChunker, image_tokenizer: ImageTokenizer | None, progress: bool) -> Iterator[VivoEvent]:
    for prompt in ended:
        yield from streams.finish(prompt, "max_len")
    with eval_mode(model):
        run = JointRun(model, feats, mask, **plan)
        total = max(run.block_size if run.image_rows else 0, max(run.max_len, default=0))
        show = progress and sys.stderr.isatty()
        try:
            with tqdm(total=total, desc="omnivivo", disable=not show, leave=False) as bar:
                logits = prefill(model, run) if not run.done else (None, None)
                while not run.done:
                    events, image_codes, speech_codes = advance(run, *sample_step(run, logits), streams,
                                                                image_tokenizer)
                    yield from events
                    bar.update(1)
                    if not run.done:
                        logits = decode_one_step(model, run, image_codes, speech_codes)
        finally:
            run.close()


def _seeds(seed: int | Sequence[int], B: int, what: str) -> list[int]:
    seeds = [seed + b for b in range(B)] if isinstance(seed, int) and not isinstance(seed, bool) else list(seed)
    if len(seeds) != B or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise InputError(f"{len(seeds)} {what} for {B} prompts", "pass one integer seed per prompt, or one int")
    return seeds


def _per_prompt(value: int | Sequence[int], B: int, what: str, cap: int) -> list[int]:
    values = [value] * B if isinstance(value, int) and not isinstance(value, bool) else list(value)
    if len(values) != B:
        raise InputError(f"{len(values)} {what} values for {B} prompts", "pass one per prompt, or one int")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= cap:
            raise InputError(f"{what} {v!r} is not an integer in [0, {cap}]", "max_speech_len caps the length")
    return values


def _length_limits(model: VivoModel, mask: torch.Tensor, min_len: int | Sequence[int] | None,
                   max_len: int | Sequence[int] | None) -> tuple[list[int], list[int]]:
    B, cap = mask.shape[0], model.cfg.max_speech_len
    rules = [model.cfg.length_limits(n) for n in mask.sum(dim=1).tolist()]
    lo = [r[0] for r in rules] if min_len is None else _per_prompt(min_len, B, "min_len", cap)
    hi = [r[1] for r in rules] if max_len is None else _per_prompt(max_len, B, "max_len", cap)
    if min_len is None:
        lo = [min(a, b) for a, b in zip(lo, hi)]
    elif any(a > b for a, b in zip(lo, hi)):
        raise InputError(f"min_len {lo} exceeds max_len {hi}", "EOS would never be allowed")
    return lo, hi


def _decoders(model: VivoModel, source: SpeechTokenizer | Sequence[SpeechStreamDecoder] | None, B: int
              ) -> dict[int, SpeechStreamDecoder]:
    if source is None:
        return {}
    if isinstance(source, SpeechTokenizer):
        if source.codebook_size != model.cfg.speech_vocab:
            raise InputError(f"the speech tokenizer has {source.codebook_size} codes, the model speaks "
                             f"{model.cfg.speech_vocab}", "use the tokenizer the speech path was trained on")
        return {b: source.stream_decoder(1) for b in range(B)}
    decoders = list(source)
    if len(decoders) != B or not all(isinstance(d, SpeechStreamDecoder) and d.batch_size == 1 for d in decoders):
        raise InputError(f"{len(decoders)} speech stream decoders for {B} prompts",
                         "pass one streaming decoder of batch size 1 per prompt, or the speech tokenizer")
    return dict(enumerate(decoders))

