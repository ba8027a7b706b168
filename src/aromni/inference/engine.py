"""The generation loop: prefill, one-token decode on the static KV cache, and an iterator over steps.

Shape of gpt-fast's ``generate.py``: :func:`prefill` runs the (left-padded) prompts once, :func:`decode_one_token`
feeds one token per row, and :meth:`Engine.generate` is an iterator (litgpt style) that yields a :class:`Step`
each time tokens are produced, so callers stream text, images and speech as they come.

Per step, for the whole batch at once: grammar mask of the modality state machine (:mod:`~aromni.inference.fsm`)
-> repetition penalty -> temperature -> top-k -> top-p (per-state values) -> greedy or sampled selection
(per-row flag) -> state transition. Rows stop at ``<eos>``/extra stop tokens, at ``max_new_tokens`` and at the
context length; finished rows are fed ``<pad>`` until the batch ends.

Image spans under classifier-free guidance run as a separate phase (:mod:`~aromni.inference.cfg`) with its own
three-row cache (the main cache is freed meanwhile); afterwards the main cache is rebuilt by one re-prefill of
every row's context, as the official decoder does after each image. That prefill is cheap next to the N CFG
decode steps, and rows that waited while others drew their image come back in step. Without CFG, image codes
are sampled inline and the cache is never rebuilt: text, speech and images all continue one cache.

An :class:`Engine` drives one decoder; starting a new generation invalidates the previous unfinished one (they
would share the KV cache).
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from aromni.errors import AromniError, InputError
from aromni.inference.cfg import generate_image_cfg, left_pad_batch
from aromni.inference.fsm import ModalityFSM, RowState, State
from aromni.inference.options import DecodeOptions
from aromni.inference.processors import (
    AllowOnly,
    ProcessorChain,
    RepetitionPenalty,
    StepContext,
    Temperature,
    TopK,
    TopP,
)
from aromni.inference.sampling import exponential_noise, make_generators, select_tokens
from aromni.models.decoder import Decoder
from aromni.vocab.layout import VocabLayout

#: Token value of a row that emitted nothing at a step.
NO_TOKEN = -1


@dataclass
class Step:
    """Tokens produced at one step.

    Attributes:
        index: step number (0-based).
        tokens: one id per row, :data:`NO_TOKEN` where the row emitted nothing (finished, or waiting while other
            rows generate an image under CFG).
        finished: per row, True once the row has stopped (including at this step).
        time: ``time.perf_counter()`` when the tokens reached the host.
        phase: ``"decode"`` or ``"image_cfg"``.
    """

    index: int
    tokens: list[int]
    finished: list[bool]
    time: float
    phase: str = "decode"


@dataclass
class Generation:
    """The outcome of one row.

    Attributes:
        prompt: the prompt ids actually used (T2I prompts get a final ``<boi>``).
        tokens: generated ids, the stop token included.
        stop_reason: the stop token's role (``"eos"``, ``"eom"``, or ``"token:<id>"``), ``"image"`` (image-only
            generation finished its image), ``"max_new_tokens"`` or ``"max_seq_len"``; ``None`` while running.
    """

    prompt: list[int]
    tokens: list[int] = field(default_factory=list)
    stop_reason: str | None = None


@torch.no_grad()
def prefill(decoder: Decoder, tokens: torch.Tensor, left_pad: torch.Tensor | None, start: int = 0) -> torch.Tensor:
    """Run ``tokens [B, T]`` through the cache at slots ``start..start+T-1``; next-token logits ``[B, V]``.

    ``left_pad [B]`` is given with the first prefill of a cache; later chunks reuse the remembered padding."""
    pos = torch.arange(start, start + tokens.shape[1], device=tokens.device)
    return decoder(tokens, input_pos=pos, left_pad=left_pad, logits_to_keep=1)[:, -1]


@torch.no_grad()
def decode_one_token(decoder: Decoder, tokens: torch.Tensor, pos: int) -> torch.Tensor:
    """Feed ``tokens [B]`` at cache slot ``pos``; next-token logits ``[B, V]``."""
    return decoder(tokens[:, None], input_pos=torch.tensor([pos], device=tokens.device))[:, -1]


@torch.no_grad()
def decode_rows(decoder: Decoder, tokens: torch.Tensor, row_pos: torch.Tensor) -> torch.Tensor:
    """The static step: feed ``tokens [B]`` at per-row cache slots ``row_pos [B]``, attending over the whole
    cache with a mask; next-token logits ``[B, V]``. Fixed shapes and no host sync, so it compiles to one graph
    (``Engine(compile=True)``) and, on CUDA, to a CUDA graph."""
    return decoder(tokens[:, None], row_pos=row_pos)[:, -1]


def compile_step(enabled: bool, device: torch.device) -> Callable[[Decoder, torch.Tensor, torch.Tensor],
                                                                  torch.Tensor] | None:
    """:func:`decode_rows` compiled (``reduce-overhead``, i.e. CUDA graphs, on CUDA; inductor's default
    elsewhere), or ``None`` when not ``enabled``."""
    if not enabled:
        return None
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    return torch.compile(decode_rows, mode=mode, dynamic=False, fullgraph=True)


class Engine:
    """Batched generation on one decoder.

    Args:
        decoder: the model (its parameters' device is used).
        layout: vocabulary layout.
        image_tokens: codes per image (from the image tokenizer); ``None`` disables image generation unless the
            options give it.
    """

    def __init__(self, decoder: Decoder, layout: VocabLayout, *, image_tokens: int | None = None,
                 compile: bool = False):
        if decoder.cfg.vocab_size != layout.vocab_size:
            raise AromniError(f"decoder has {decoder.cfg.vocab_size} ids, the layout {layout.vocab_size}")
        self.decoder, self.layout, self.image_tokens = decoder, layout, image_tokens
        self._owner: object | None = None
        self.compiled = bool(compile)
        self._compiled_step = compile_step(self.compiled, self.device)

    def decode(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        """One decode step for ``tokens [B]`` at cache slot ``pos`` (every row); logits ``[B, V]``. Eager: the
        cache prefix up to ``pos``; compiled: the static step over the whole cache."""
        if self._compiled_step is None:
            return decode_one_token(self.decoder, tokens, pos)
        return self._compiled_step(self.decoder, tokens, torch.full_like(tokens, pos))

    def cache_len(self, need: int) -> int:
        """Cache slots to allocate for ``need``: just that eagerly. Compiled: ``need`` rounded up to a power of
        two (at least 256, at most the model's context), so generations share a few cache shapes and the step
        compiles once per shape (and batch size), not once per generation. Not the whole context every time:
        the static step attends over every slot, and a 4,096-slot cache made a 100m model's TTS steps 22%
        slower than the eager ones (benchmarks/stream_tts.py)."""
        if not self.compiled:
            return need
        size = 256
        while size < need:
            size *= 2
        return min(size, self.max_seq_len)

    @property
    def device(self) -> torch.device:
        return self.decoder.embed.weight.device

    @property
    def max_seq_len(self) -> int:
        return self.decoder.cfg.max_seq_len

    def generate(self, prompts: Sequence[Sequence[int]], options: DecodeOptions | None = None) -> GenerationStream:
        """Start generating for ``prompts`` (lists of ids). Iterate the result for :class:`Step` s; its
        ``results`` hold each row's :class:`Generation`. Bad prompts raise here, before any compute."""
        return GenerationStream(self, prompts, options or DecodeOptions())

    def run(self, prompts: Sequence[Sequence[int]], options: DecodeOptions | None = None) -> list[Generation]:
        """Generate to the end and return each row's :class:`Generation`."""
        stream = self.generate(prompts, options)
        for _ in stream:
            pass
        return stream.results


class GenerationStream:
    """One batched generation; iterate it once for :class:`Step` s. See :class:`Engine`."""

    def __init__(self, engine: Engine, prompts: Sequence[Sequence[int]], options: DecodeOptions):
        self.engine, self.options = engine, options
        self.layout, self.decoder = engine.layout, engine.decoder
        o = options
        n_img = o.image_tokens or engine.image_tokens
        if n_img is None:
            if not o.allow_text:
                raise AromniError("image-only generation needs the number of codes per image",
                                  "load a bundle with an image tokenizer or set image_tokens")
            o = o.replace(allow_image=False)
        self.options, self.n_image = o, int(n_img or 1)
        self.fsm = ModalityFSM(self.layout, o, self.n_image, engine.device)
        prompts = self._check_prompts(prompts)
        self.rows: RowState = self.fsm.initial(prompts)
        if not o.allow_text:  # official T2I: the image decoder appends <boi> to the prompt
            prompts = [p if s in (State.IMAGE, State.IMAGE_END) else [*p, self.layout.boi]
                       for p, s in zip(prompts, self.rows.state.tolist())]
            self.rows = self.fsm.initial(prompts)
        self.results = [Generation(list(p)) for p in prompts]
        self._budgets(prompts)
        self._started = False

    # ------------------------------------------------------------------------------------------ planning
    def _check_prompts(self, prompts: Sequence[Sequence[int]]) -> list[list[int]]:
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence) or not len(prompts):
            raise InputError("prompts must be a non-empty list of token-id lists")
        out = []
        V = self.layout.vocab_size
        for i, p in enumerate(prompts):
            if isinstance(p, torch.Tensor):
                p = p.tolist()
            if isinstance(p, (str, bytes)) or not isinstance(p, Sequence) or not len(p):
                raise InputError(f"prompt {i} must be a non-empty list of token ids")
            if not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in p):
                raise InputError(f"prompt {i} holds values that are not integer token ids")
            p = [int(t) for t in p]
            if min(p) < 0 or max(p) >= V:
                raise InputError(f"prompt {i} has a token id outside [0, {V})")
            out.append(list(p))
        return out

    def _budgets(self, prompts: list[list[int]]) -> None:
        o = self.options
        limit = min(o.max_seq_len or self.engine.max_seq_len, self.engine.max_seq_len)
        self.budget, self.limit_reason = [], []
        lefts = self.rows.image_left.tolist()
        for i, (p, s) in enumerate(zip(prompts, self.rows.state.tolist())):
            room = limit - len(p)
            if room <= 0:
                raise InputError(f"prompt {i} has {len(p)} tokens but the context holds {limit}",
                                 "shorten the prompt (or the chat history) or raise max_seq_len")
            need = lefts[i] + 1 if s == State.IMAGE else 1
            if min(room, o.max_new_tokens) < need:
                raise InputError(f"prompt {i} needs {need} more tokens to finish its image but only "
                                 f"{min(room, o.max_new_tokens)} fit", "raise max_new_tokens or shorten the prompt")
            self.budget.append(min(room, o.max_new_tokens))
            self.limit_reason.append("max_new_tokens" if o.max_new_tokens <= room else "max_seq_len")

    def _processors(self) -> tuple[ProcessorChain, ProcessorChain]:
        """The full chain and the greedy one (grammar mask + repetition penalty: what can move the argmax)."""
        t, i, f = self.options.text, self.options.image, self.fsm.per_state
        greedy = [AllowOnly(None), RepetitionPenalty(f(t.repetition_penalty, 1.0, 1.0))]
        warpers = [Temperature(f(t.temperature, i.temperature, 1.0)), TopK(f(t.top_k, i.top_k, 0)),
                   TopP(f(t.top_p, i.top_p, 1.0))]
        return ProcessorChain(greedy + warpers), ProcessorChain(greedy)

    # ------------------------------------------------------------------------------------------ loop
    def __iter__(self) -> Iterator[Step]:
        if self._started:
            raise AromniError("a generation can be iterated only once")
        self._started = True
        self.engine._owner = self
        try:
            yield from self._loop()
        finally:
            if self.engine._owner is self:
                self.decoder.clear_caches()
                self.engine._owner = None

    def _setup(self) -> None:
        dev, B, V = self.engine.device, len(self.results), self.layout.vocab_size
        o = self.options
        if isinstance(o.seed, Sequence):
            if len(o.seed) != B:
                raise InputError(f"{len(o.seed)} seeds for {B} prompts", "give one seed per prompt or one int")
            seeds = [int(s) for s in o.seed]
        else:
            seed = o.seed if o.seed is not None else int(torch.randint(0, 2**62, (1,)))
            seeds = [seed + b for b in range(B)]
        self.generators = make_generators(seeds, dev)
        self.chain, self.greedy_chain = self._processors()
        self.presence = torch.zeros(B, V, dtype=torch.bool, device=dev)
        for b, g in enumerate(self.results):
            self.presence[b, torch.as_tensor(g.prompt, device=dev)] = True
        self.budget_t = torch.tensor(self.budget, dtype=torch.long, device=dev)
        self.finished_t = torch.zeros(B, dtype=torch.bool, device=dev)
        self.finished = [False] * B
        self.host_state = self.rows.state.tolist()
        self.host_greedy = self.fsm.greedy_rows(self.rows).tolist()
        self.step_index = 0

    def _loop(self) -> Iterator[Step]:
        self._setup()
        logits = self._prefill_all()
        cfg = self.options.image.uses_cfg
        while True:
            self._check_owner()
            image_rows = [b for b, s in enumerate(self.host_state)
                          if cfg and s == State.IMAGE and not self.finished[b]]
            if image_rows:
                logits = yield from self._image_phase(image_rows)
                if logits is None:
                    return
                continue
            tok = self._select(logits)
            active = ~self.finished_t
            tok = torch.where(active, tok, torch.full_like(tok, self.layout.pad))
            yield self._commit(tok, active, "decode")
            if all(self.finished):
                return
            self._check_owner()
            if cfg and any(s == State.IMAGE and not f for s, f in zip(self.host_state, self.finished)):
                continue  # the image phase starts from the contexts, <boi> included
            logits = self.engine.decode(tok, self.pos)
            self.pos += 1

    def _select(self, logits: torch.Tensor) -> torch.Tensor:
        """Next token per row: grammar mask, penalties, then argmax or a sample (per-row flag)."""
        ctx = StepContext(state=self.rows.state, presence=self.presence,
                          allowed=self.fsm.allowed(self.rows, self.budget_t))
        sampling = [b for b, g in enumerate(self.host_greedy) if not g and not self.finished[b]]
        if not sampling:
            # Greedy takes the argmax of the processed probabilities; temperature, top-k and top-p never move
            # the argmax, so they (and the noise) are skipped.
            return self.greedy_chain(logits, ctx).argmax(dim=-1)
        processed = self.chain(logits, ctx)
        # Only sampling rows draw noise, so a row's random stream never depends on the other rows.
        noise = torch.ones_like(processed)
        noise[sampling] = exponential_noise([self.generators[b] for b in sampling], self.layout.vocab_size,
                                            self.engine.device)
        return select_tokens(processed, self.fsm.greedy_rows(self.rows), noise)

    def _check_owner(self) -> None:
        if self.engine._owner is not self:
            raise AromniError("this generation was interrupted: a newer one started on the same model",
                              "finish (or close) one generation before starting the next")

    def _prefill_all(self, rows: list[list[int]] | None = None, extra: int | None = None) -> torch.Tensor:
        """(Re)build the main cache from each row's full context and return next-token logits ``[B, V]``."""
        rows = rows or [g.prompt for g in self.results]
        tokens, pad = left_pad_batch(rows, self.layout.pad, self.engine.device)
        extra = max(self.budget) if extra is None else extra
        self.decoder.setup_caches(len(rows), self.engine.cache_len(tokens.shape[1] + extra))
        self.pos = tokens.shape[1]
        return prefill(self.decoder, tokens, pad)

    def _commit(self, tok: torch.Tensor, active: torch.Tensor, phase: str) -> Step:
        """Advance states for the rows that emitted ``tok``; move the step to the host and record it."""
        B = tok.shape[0]
        self.rows = self.fsm.advance(self.rows, tok, active)
        self.presence[torch.arange(B, device=tok.device), tok] |= active
        self.budget_t = self.budget_t - active.long()
        done = active & ((self.rows.state == State.DONE) | (self.budget_t <= 0))
        self.finished_t = self.finished_t | done
        greedy = self.fsm.greedy_rows(self.rows).long()
        host = torch.stack([tok, active.long(), done.long(), self.rows.state, greedy]).tolist()
        now = time.perf_counter()
        toks, act, dn, self.host_state, self.host_greedy = host
        out = []
        for b in range(B):
            if not act[b]:
                out.append(NO_TOKEN)
                continue
            out.append(toks[b])
            g = self.results[b]
            g.tokens.append(toks[b])
            if dn[b]:
                self.finished[b] = True
                g.stop_reason = self._reason(b, toks[b])
        step = Step(self.step_index, out, list(self.finished), now, phase)
        self.step_index += 1
        return step

    def _reason(self, b: int, tok: int) -> str:
        if self.host_state[b] == State.DONE:
            if tok in self.fsm.stop_ids:
                roles = [r for r, i in self.layout.special.items() if i == tok]
                return roles[0] if roles else f"token:{tok}"
            return "image"
        return self.limit_reason[b]

    # ------------------------------------------------------------------------------------------ CFG images
    def _image_phase(self, image_rows: list[int]) -> Iterator[Step]:
        """Generate one image per row in ``image_rows`` under CFG; return the logits to continue with (or
        ``None`` when every row is finished)."""
        lefts = self.rows.image_left.tolist()
        n = max(lefts[b] for b in image_rows)
        group = [b for b in image_rows if lefts[b] == n]  # rows mid-image with fewer codes left go next
        self.decoder.clear_caches()  # free the main cache while the 3k-row CFG cache is in use
        contexts = [self.results[b].prompt + self.results[b].tokens for b in group]
        dev, B = self.engine.device, len(self.results)
        rows_t = torch.tensor(group, device=dev)
        active = torch.zeros(B, dtype=torch.bool, device=dev)
        active[rows_t] = True
        full = torch.full((B,), self.layout.pad, dtype=torch.long, device=dev)
        gens = [self.generators[b] for b in group]
        step = self.engine.decode if self.engine.compiled else None
        for codes in generate_image_cfg(self.decoder, self.layout, contexts, n, self.options.image, gens,
                                        decode=step, cache_len=self.engine.cache_len):
            self._check_owner()
            yield self._commit(full.index_put((rows_t,), codes), active, "image_cfg")
        yield self._commit(full.index_fill(0, rows_t, self.layout.eoi), active, "image_cfg")
        if all(self.finished):
            return None
        # Rebuild the main cache from every row's context (rows that waited are out of step with the image rows).
        ctx = [g.prompt + g.tokens if not self.finished[b] else [self.layout.pad] for b, g in enumerate(self.results)]
        left = [self.budget[b] - len(g.tokens) for b, g in enumerate(self.results) if not self.finished[b]]
        return self._prefill_all(ctx, extra=max(left))
