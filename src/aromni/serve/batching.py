"""Continuous batching: concurrent requests share one decoder's static batch cache.

:class:`BatchingEngine` is an :class:`~aromni.inference.engine.Engine` whose :meth:`~BatchingEngine.generate` is
thread-safe: every request becomes a :class:`RowStream` (one prompt, one row) and a single worker thread steps
all of them together. The rest of the inference stack (``OmniModel.tts(stream=True)``, ``asr``, ``t2i``,
``ChatSession.stream``) runs unchanged on top of it, because a :class:`RowStream` is a
:class:`~aromni.inference.engine.GenerationStream`: the same prompt checks, budgets, modality state machine,
processors and per-row random generator, only fed by the shared batch instead of a private cache.

How a step goes (the worker, between two decoder calls):

1. *Cancel*: requests whose cancel event is set (client disconnect, timeout) free their rows.
2. *Join*: waiting requests take free rows while rows and ``max_active`` allow. Each is prefilled alone into its
   row (``decoder(prompt[1, L], input_pos=arange(L), cache_row=r)``) and picks its first token from those
   logits, exactly as the plain engine does after its prefill.
3. *Decode*: one ``decoder(tokens[R, 1], row_pos=pos[R])`` call for all ``R`` cache rows, each row at its own
   slot (rows joined at different times, so their lengths differ). Free rows are fed ``<pad>`` at slot 0 and
   their logits ignored; the call always has ``R`` rows, so a request's arithmetic does not depend on how busy
   the batch is (the alone-equals-batched tests rely on that).
4. *Select*: every request runs its own grammar mask, penalties and sampler on its row's logits
   (``GenerationStream._select`` / ``_commit``) and gets a :class:`~aromni.inference.engine.Step` on its queue.
   A finished request frees its rows at once.

**Images under classifier-free guidance.** The plain engine decodes each image in a separate phase with a
private three-row cache. Here an image span instead borrows two *companion rows* of the shared cache: when a
request enters an image (``<boi>`` sampled, or a T2I prompt ending in ``<boi>``), its image-only context and the
unconditional ``[<bos>, <boi>]`` context are prefilled into the two rows, and from then on its three rows
(full, image-only, unconditional) are decoded in lockstep inside the shared batch step; their logits are mixed
(:func:`~aromni.inference.cfg.mix_cfg_logits`) and one code is sampled and fed to all three. At ``<eoi>`` the
companions are freed and the request goes on in its own row with its cache intact (no re-prefill, unlike the
plain engine). A request that may draw a CFG image reserves its three rows when it joins, so an image never
waits for rows and the batch cannot deadlock; text and speech requests take one row.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import heapq
import logging
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch

from aromni.errors import AromniError, InputError
from aromni.inference.cfg import cfg_contexts, image_processors, mix_cfg_logits
from aromni.inference.engine import Engine, GenerationStream, Step, decode_rows
from aromni.inference.fsm import State
from aromni.inference.omni import OmniModel
from aromni.inference.options import DecodeOptions
from aromni.inference.processors import ProcessorChain, StepContext
from aromni.inference.sampling import exponential_noise, select_tokens
from aromni.models.decoder import Decoder
from aromni.vocab.layout import VocabLayout

log = logging.getLogger(__name__)

#: The cancel event that :meth:`BatchingEngine.generate` attaches to the streams it creates (see
#: :meth:`BatchingEngine.cancel_scope`).
_CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("aromni_cancel", default=None)


class RequestCancelled(AromniError):
    """The request was cancelled (its client went away or its time ran out) before it finished."""


@dataclass
class EngineStats:
    """Counters of a :class:`BatchingEngine` (a snapshot; ``/metrics`` exports them).

    Attributes:
        rows: cache rows (the batch size of every decode step).
        rows_busy: rows held by requests now (companion rows of CFG images included).
        active: requests decoding now.
        queued: requests waiting for rows.
        steps: batched decode steps run.
        tokens: tokens committed to requests (prefill picks and image codes included).
        admitted / finished / cancelled / failed: requests that joined / ended normally / were cancelled / got
            an error.
        rows_freed_cancelled: rows handed back by cancelled requests.
        busy_seconds: wall time spent in prefills and decode steps.
    """

    rows: int
    rows_busy: int = 0
    active: int = 0
    queued: int = 0
    steps: int = 0
    tokens: int = 0
    admitted: int = 0
    finished: int = 0
    cancelled: int = 0
    failed: int = 0
    rows_freed_cancelled: int = 0
    busy_seconds: float = 0.0

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


class RowStream(GenerationStream):
    """One request (one prompt) on a :class:`BatchingEngine`. Iterate it once for its :class:`Step` s; closing
    the iterator early (or setting its cancel event) cancels the request and frees its rows within one step."""

    def __init__(self, engine: BatchingEngine, prompts: Sequence[Sequence[int]], options: DecodeOptions,
                 cancel: threading.Event | None):
        if not isinstance(prompts, Sequence) or isinstance(prompts, (str, bytes)) or len(prompts) != 1:
            n = len(prompts) if isinstance(prompts, Sequence) else "no"
            raise InputError(f"the batching engine takes one prompt per request, got {n}",
                             "submit each prompt as its own request; the engine batches them")
        super().__init__(engine, prompts, options)
        self.batcher = engine
        self.cancel_event = cancel if cancel is not None else threading.Event()
        self.rows_needed = 3 if self.options.allow_image and self.options.image.uses_cfg else 1
        if self.rows_needed > engine.max_rows:
            raise InputError(f"image generation under classifier-free guidance needs 3 batch rows, the engine "
                             f"has {engine.max_rows}", "serve with a batch of at least 3 rows, or turn CFG off")
        self.done = False
        self._out: queue.Queue[Step | BaseException | None] = queue.Queue()
        # Worker-side state: the request's own row, its reserved/borrowed companion rows, what each is fed next.
        self.row = -1
        self.spare: list[int] = []
        self.companions: list[int] = []
        self.pending: list[int] = []
        self.cfg_chain: ProcessorChain | None = None
        # Decode steps the engine had run when the cancel was asked for, and when the rows were freed.
        self.cancel_step: int | None = None
        self.release_step: int | None = None

    def cancel(self) -> None:
        """Ask the engine to drop this request; its rows are freed before the next decode step."""
        if self.cancel_step is None:
            self.cancel_step = self.batcher.stats().steps
        self.cancel_event.set()
        self.batcher.wake()

    def __iter__(self) -> Iterator[Step]:
        if self._started:
            raise AromniError("a generation can be iterated only once")
        self._started = True
        self.batcher.submit(self)
        try:
            while True:
                item = self._out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not self.done:
                self.cancel()

    # ---------------------------------------------------------------- worker side
    @property
    def rows_held(self) -> list[int]:
        return [self.row, *self.companions]

    def needs_cfg(self) -> bool:
        return (self.rows_needed == 3 and not self.finished[0] and self.host_state[0] == State.IMAGE
                and not self.companions)

    def deliver(self, item: Step | BaseException | None) -> None:
        if item is None or isinstance(item, BaseException):
            self.done = True
        self._out.put(item)


class BatchingEngine(Engine):
    """A thread-safe engine that batches concurrent requests on one decoder (see the module docstring).

    Args:
        decoder, layout, image_tokens: as :class:`~aromni.inference.engine.Engine`.
        max_rows: cache rows ``R``: the batch of every decode step (a CFG image takes three).
        max_active: requests decoding at once (default: ``max_rows``). ``max_active=1`` serves one request at a
            time on the same code path: the baseline that batching is measured against.
        compile: run the decode step compiled (see :func:`~aromni.inference.engine.compile_step`).
        batch_invariant: decode all ``max_rows`` rows at every step (default), so a request's arithmetic, and
            therefore its tokens, never depend on the load. ``False`` decodes only the rows up to the highest busy
            one (rounded up to a power of two, at least 4): faster when few requests run, but matrix kernels
            may pick another blocking for another row count, which can move the last bits of the logits (on
            this project's CPU, float32 results were identical from 4 rows up and differed below).
    """

    def __init__(self, decoder: Decoder, layout: VocabLayout, *, image_tokens: int | None = None,
                 max_rows: int = 8, max_active: int | None = None, batch_invariant: bool = True,
                 compile: bool = False):
        super().__init__(decoder, layout, image_tokens=image_tokens, compile=compile)
        if max_rows < 1 or (max_active is not None and max_active < 1):
            raise InputError(f"max_rows and max_active must be >= 1, got {max_rows} and {max_active}")
        self.max_rows, self.max_active = int(max_rows), int(max_active or max_rows)
        self.batch_invariant = bool(batch_invariant)
        self._cond = threading.Condition()
        self._waiting: deque[RowStream] = deque()
        self._active: list[RowStream] = []
        self._free = list(range(self.max_rows))  # a heap: the lowest free row first, keeping busy rows packed
        self._length = [0] * self.max_rows  # filled slots per cache row (host copy)
        self._stats = EngineStats(rows=self.max_rows)
        self._thread: threading.Thread | None = None
        self._closed = False

    # ---------------------------------------------------------------- public API (any thread)
    def generate(self, prompts: Sequence[Sequence[int]], options: DecodeOptions | None = None) -> RowStream:
        """A :class:`RowStream` for one prompt; it joins the batch when iterated. Bad prompts raise here."""
        return RowStream(self, prompts, options or DecodeOptions(), _CANCEL.get())

    @staticmethod
    @contextlib.contextmanager
    def cancel_scope(event: threading.Event) -> Iterator[None]:
        """Streams created by :meth:`generate` inside this block are cancelled when ``event`` is set (a server
        sets it when the client disconnects or the request times out)."""
        token = _CANCEL.set(event)
        try:
            yield
        finally:
            _CANCEL.reset(token)

    def stats(self) -> EngineStats:
        with self._cond:
            s = EngineStats(**self._stats.to_dict())
            s.queued = len(self._waiting)
            s.active = len(self._active)
            s.rows_busy = self.max_rows - len(self._free)
            return s

    def submit(self, stream: RowStream) -> None:
        with self._cond:
            if self._closed:
                raise RequestCancelled("the engine is shut down", "retry; if it persists, restart the server")
            self._waiting.append(stream)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="aromni-batching", daemon=True)
                self._thread.start()
                # Stop the worker before the interpreter tears torch down under it (a daemon thread still inside
                # a kernel at exit aborts the process).
                atexit.register(_close_engine, weakref.ref(self))
            self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def close(self) -> None:
        """Stop the worker; requests still waiting or running get a :class:`RequestCancelled`."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    # ---------------------------------------------------------------- worker
    def _work(self) -> None:
        try:
            self.decoder.setup_caches(self.max_rows, self.max_seq_len)
            while True:
                with self._cond:
                    while not (self._closed or self._waiting or self._active):
                        self._cond.wait()
                    if self._closed:
                        break
                    joining = self._take_joining()
                try:
                    self._drop_cancelled()
                    t0 = time.perf_counter()
                    for s in joining:
                        self._admit_or_fail(s)
                    if self._active:
                        self._step()
                    with self._cond:
                        self._stats.busy_seconds += time.perf_counter() - t0
                except Exception as e:  # noqa: BLE001 - a failed step fails its requests, not the server
                    self._fail_all(joining, e)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory allocating the cache: logged, then as closed
            log.error("the batching engine's worker stopped", exc_info=e)
            why = f" ({type(e).__name__}: {e})"
        else:
            why = ""
        finally:
            # Whether closed or crashed: take no more requests, and release every one in flight rather than leave
            # it waiting on a worker that is gone.
            with self._cond:
                self._closed = True
                left = list(self._waiting) + self._active
                self._waiting.clear()
            self.decoder.clear_caches()
        for s in left:
            s.deliver(RequestCancelled(f"the engine stopped before this request finished{why}",
                                       "retry; if it persists, restart the server"))

    def _take_joining(self) -> list[RowStream]:
        """Pop waiting requests that fit the free rows (called with the lock held; order kept: no overtaking)."""
        for s in [s for s in self._waiting if s.cancel_event.is_set()]:  # gone before they got a row
            self._waiting.remove(s)
            self._stats.cancelled += 1
            s.results[0].stop_reason = "cancelled"
            s.deliver(None)
        joining, free = [], len(self._free)
        while self._waiting and len(self._active) + len(joining) < self.max_active:
            s = self._waiting[0]
            if s.rows_needed > free:
                break
            free -= s.rows_needed
            joining.append(self._waiting.popleft())
        return joining

    def _admit_or_fail(self, s: RowStream) -> None:
        """Admit ``s``; if its prefill fails (a prompt too long for the memory left, say), only ``s`` fails:
        a one-row prefill touches no other row."""
        try:
            self._admit(s)
        except Exception as e:  # noqa: BLE001 - the error belongs to this request only
            if s in self._active:
                self._release(s)
            with self._cond:
                self._stats.failed += 1
            s.deliver(e)

    def _admit(self, s: RowStream) -> None:
        rows = [heapq.heappop(self._free) for _ in range(s.rows_needed)]
        s.row, s.spare = rows[0], rows[1:]
        self._active.append(s)
        with self._cond:
            self._stats.admitted += 1
        s._setup()
        prompt = s.results[0].prompt
        if s.needs_cfg():
            # The first image code comes from the mixed logits of three rows: prefill all but the final <boi>,
            # which the first batched step feeds to the three rows together.
            self._prefill(s.row, prompt[:-1])
            s.pending = [prompt[-1]]
            self._attach_companions(s)
            return
        self._advance(s, self._prefill(s.row, prompt))

    def _prefill(self, row: int, ids: list[int]) -> torch.Tensor | None:
        """Write ``ids`` into cache row ``row`` from slot 0; next-token logits ``[1, V]`` (``None`` if empty)."""
        self._length[row] = len(ids)
        if not ids:
            return None
        tokens = torch.tensor([ids], dtype=torch.long, device=self.device)
        pos = torch.arange(len(ids), device=self.device)
        with torch.no_grad():
            return self.decoder(tokens, input_pos=pos, cache_row=row, logits_to_keep=1)[:, -1]

    def _attach_companions(self, s: RowStream) -> None:
        context = s.results[0].prompt + s.results[0].tokens
        rows = cfg_contexts([context], self.layout)  # [full, image-only, unconditional]
        s.companions, s.spare = s.spare, []
        for row, ids in zip(s.companions, rows[1:]):
            self._prefill(row, ids[:-1])
        s.pending = s.pending[:1] + [ids[-1] for ids in rows[1:]]
        s.cfg_chain = image_processors(self.layout, s.options.image, self.device)

    def _rows_to_decode(self) -> int:
        if self.batch_invariant:
            return self.max_rows
        top = max(row for s in self._active for row in s.rows_held) + 1
        return min(self.max_rows, max(4, 1 << (top - 1).bit_length()))

    def _step(self) -> None:
        R = self._rows_to_decode()
        tokens = [self.layout.pad] * R
        pos = [0] * R
        for s in self._active:
            for row, tok in zip(s.rows_held, s.pending):
                tokens[row], pos[row] = tok, self._length[row]
        dev = self.device
        step = self._compiled_step or decode_rows  # the compiled static step when compile=True
        logits = step(self.decoder, torch.tensor(tokens, device=dev), torch.tensor(pos, device=dev))
        for s in self._active:
            for row in s.rows_held:
                self._length[row] += 1
        with self._cond:
            self._stats.steps += 1
        for s in list(self._active):
            self._advance(s, logits[s.rows_held])

    def _advance(self, s: RowStream, logits: torch.Tensor) -> None:
        """Pick, commit and deliver ``s``'s next token from its rows' logits ``[1 or 3, V]``."""
        active = ~s.finished_t
        if s.companions:
            o = s.options.image
            mixed = s.cfg_chain(mix_cfg_logits(logits, o.guidance_scale_text, o.guidance_scale_image),
                                StepContext())
            noise = None if o.greedy else exponential_noise(s.generators, self.layout.vocab_size, self.device)
            tok = select_tokens(mixed, torch.full((1,), o.greedy, device=self.device), noise)
            phase = "image_cfg"
        else:
            tok, phase = s._select(logits), "decode"
        tok = torch.where(active, tok, torch.full_like(tok, self.layout.pad))
        step = s._commit(tok, active, phase)
        with self._cond:
            self._stats.tokens += 1
        s.deliver(step)
        if s.finished[0]:
            self._release(s)
            with self._cond:
                self._stats.finished += 1
            s.deliver(None)
            return
        t = step.tokens[0]
        s.pending = [t] * len(s.rows_held)
        if s.companions and s.host_state[0] != State.IMAGE:
            s.spare, s.companions = s.companions, []  # the image is complete: companions go back to reserve
            s.pending = s.pending[:1]
        elif s.needs_cfg():
            self._attach_companions(s)

    def _release(self, s: RowStream) -> int:
        rows = [s.row, *s.companions, *s.spare]
        for row in rows:
            self._length[row] = 0
        for row in rows:
            heapq.heappush(self._free, row)
        s.row, s.companions, s.spare, s.pending = -1, [], [], []
        self._active.remove(s)
        return len(rows)

    def _drop_cancelled(self) -> None:
        for s in [s for s in self._active if s.cancel_event.is_set()]:
            n = self._release(s)
            s.release_step = self._stats.steps
            s.results[0].stop_reason = "cancelled"
            with self._cond:
                self._stats.cancelled += 1
                self._stats.rows_freed_cancelled += n
            s.deliver(None)

    def _fail_all(self, joining: list[RowStream], error: Exception) -> None:
        """A step raised: every request in flight gets the error, the rows and the cache start afresh."""
        failed = list(self._active) + [s for s in joining if s not in self._active]
        for s in list(self._active):
            self._release(s)
        self._free = list(range(self.max_rows))
        self._length = [0] * self.max_rows
        with self._cond:
            self._stats.failed += len(failed)
        for s in failed:
            s.deliver(error)
        self.decoder.setup_caches(self.max_rows, self.max_seq_len)


def _close_engine(ref: weakref.ref[BatchingEngine]) -> None:
    engine = ref()
    if engine is not None:
        engine.close()


def enable_batching(model: OmniModel, *, max_rows: int = 8, max_active: int | None = None,
                    batch_invariant: bool = True) -> BatchingEngine:
    """Swap ``model.engine`` for a :class:`BatchingEngine` on the same decoder; every task method of ``model``
    then runs through the shared batch (one prompt per call) and may be called from many threads at once."""
    old = model.engine
    engine = BatchingEngine(old.decoder, old.layout, image_tokens=old.image_tokens, max_rows=max_rows,
                            max_active=max_active, batch_invariant=batch_invariant, compile=old.compiled)
    model.engine = engine
    return engine
