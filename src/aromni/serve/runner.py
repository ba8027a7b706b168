"""Running model work for a request: worker threads, cancellation, the deadline, the client going away.

Every model call and every ``next()`` of a model iterator runs in a worker thread (the event loop never blocks)
inside ``engine.cancel_scope(job.cancel)``, so the generations it creates end, and free their batch rows, once
the job's cancel event is set: when the client disconnects, the request times out, or it fails.

:class:`Job` is one admitted request: its :class:`~aromni.serve.limits.Slot`, cancel event and deadline.
:class:`ThreadedIterator` drives a blocking iterator (``model.tts(stream=True)``, ``ChatSession.stream``) from
async code one item at a time; all access to the iterator is serialised by a lock, and :meth:`~ThreadedIterator.
close` closes it in a thread once the step in progress has returned (a thread abandoned at a cancellation may
still be inside ``next()``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import HTTPConnection, Request

from aromni.serve.api_errors import APIError
from aromni.serve.batching import BatchingEngine
from aromni.serve.limits import Slot

T = TypeVar("T")
#: How often a non-streaming request checks that its client is still there (seconds).
DISCONNECT_POLL_S = 0.2


class ClientGone(APIError):
    """The client disconnected before its answer was ready (499: nobody reads the answer)."""

    def __init__(self) -> None:
        super().__init__(499, "the client closed the connection before the answer was ready",
                         code="client_closed_request")


class _End:
    """The end of a :class:`ThreadedIterator` (a sentinel type, so items may be anything)."""


END = _End()


class Job:
    """One request's model work (see the module docstring).

    Args:
        engine: the batching engine (its ``cancel_scope`` ties generations to :attr:`cancel`).
        limiter: the worker threads shared by all requests.
        timeout_s: the request's wall-clock limit from now (queue wait included if the job is made first).
        slot: the admission slot, released by :meth:`finish`.
        conn: the request (or WebSocket), to notice a client that went away.
        on_finish: called once by :meth:`finish` (e.g. to sample metrics).
    """

    def __init__(self, engine: BatchingEngine, limiter: anyio.CapacityLimiter, timeout_s: float,
                 slot: Slot | None = None, conn: HTTPConnection | None = None,
                 on_finish: Callable[[], None] | None = None):
        self.engine, self.limiter, self.timeout_s = engine, limiter, timeout_s
        self.slot, self.conn, self._on_finish = slot, conn, on_finish
        self.cancel = threading.Event()
        self.t_start = time.perf_counter()
        self.deadline = anyio.current_time() + timeout_s
        self.timed_out = False

    def remaining(self) -> float:
        return max(0.0, self.deadline - anyio.current_time())

    def abort(self) -> None:
        """Cancel every generation this job created (idempotent)."""
        if not self.cancel.is_set():
            self.cancel.set()
            self.engine.wake()

    def finish(self) -> None:
        """The request is over: cancel what may still run, free the slot (idempotent)."""
        self.abort()
        if self.slot is not None:
            self.slot.release()
        if self._on_finish is not None:
            on_finish, self._on_finish = self._on_finish, None
            on_finish()

    def scoped(self, fn: Callable[[], T]) -> Callable[[], T]:
        """``fn`` run inside the engine's cancel scope of this job."""
        def run() -> T:
            with self.engine.cancel_scope(self.cancel):
                return fn()
        return run

    def timeout_error(self) -> APIError:
        return APIError(504, f"the request took longer than this server's limit of {self.timeout_s:g} s "
                             "(request_timeout_s); it was cancelled",
                        "ask for less (max_tokens, shorter input) or retry when the server is less busy",
                        code="timeout")

    async def in_thread(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread before the deadline; on timeout the job is aborted and 504 raised."""
        try:
            with anyio.fail_after(self.remaining()):
                return await anyio.to_thread.run_sync(fn, limiter=self.limiter, abandon_on_cancel=True)
        except TimeoutError:
            self.timed_out = True
            self.abort()
            raise self.timeout_error() from None

    async def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread under this job's cancel scope, watching for the client going away."""
        return (await self.gather([lambda: self.in_thread(self.scoped(fn))]))[0]

    async def gather(self, works: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
        """Run ``works`` concurrently; abort them all when one fails or the client disconnects (then
        :class:`ClientGone`). The first failure is raised as it is (no exception group)."""
        results: list[T | None] = [None] * len(works)
        errors: list[Exception] = []
        gone = False

        async with anyio.create_task_group() as tg:
            async def one(i: int, work: Callable[[], Awaitable[T]]) -> None:
                try:
                    results[i] = await work()
                except Exception as e:  # noqa: BLE001 - re-raised below, after the others are stopped
                    errors.append(e)
                    self.abort()
                    tg.cancel_scope.cancel()

            async def watch() -> None:
                nonlocal gone
                if not isinstance(self.conn, Request):
                    return
                while not await self.conn.is_disconnected():
                    await anyio.sleep(DISCONNECT_POLL_S)
                gone = True
                self.abort()
                tg.cancel_scope.cancel()

            async def run_all() -> None:
                async with anyio.create_task_group() as inner:
                    for i, work in enumerate(works):
                        inner.start_soon(one, i, work)
                tg.cancel_scope.cancel()  # all done: stop the watcher

            tg.start_soon(watch)
            tg.start_soon(run_all)
        if errors:
            raise errors[0]
        if gone:
            raise ClientGone()
        return results  # type: ignore[return-value]


class ThreadedIterator(Generic[T]):
    """Items of the blocking iterator ``factory()`` for async code (see the module docstring).

    ``factory`` is called in the first worker step, inside the job's cancel scope (that is where a lazy
    generation is created). ``async for item in it`` works; :meth:`next` returns :data:`END` at the end."""

    def __init__(self, job: Job, factory: Callable[[], Iterable[T]]):
        self.job, self._factory = job, factory
        self._it: Iterator[T] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _step(self) -> T | _End:
        with self._lock:
            if self._closed:
                return END
            with self.job.engine.cancel_scope(self.job.cancel):
                if self._it is None:
                    self._it = iter(self._factory())
                return next(self._it, END)

    async def next(self) -> T | _End:
        """The next item (from a worker thread, before the job's deadline), or :data:`END`."""
        return await self.job.in_thread(self._step)

    async def first(self) -> T | _End:
        """The first item, watching for the client going away (a stream's bad input fails here, before any
        response has started); on failure the iterator is closed and its job finished."""
        try:
            return (await self.job.gather([self.next]))[0]
        except BaseException:
            self.finish()
            raise

    def finish(self) -> None:
        """Close the iterator and finish its job (the request is over)."""
        self.close()
        self.job.finish()

    def __aiter__(self) -> ThreadedIterator[T]:
        return self

    async def __anext__(self) -> T:
        item = await self.next()
        if isinstance(item, _End):
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        """Stop: the job's generations are cancelled and the iterator closed (now if no step is running,
        else in a thread as soon as that step returns). Idempotent; never blocks the event loop."""
        self.job.abort()
        if self._closed:
            return
        self._closed = True
        if self._lock.acquire(blocking=False):
            try:
                self._close_iterator()
            finally:
                self._lock.release()
        else:
            threading.Thread(target=self._close_when_free, name="aromni-close", daemon=True).start()

    def _close_when_free(self) -> None:
        with self._lock:
            self._close_iterator()

    def _close_iterator(self) -> None:
        it, self._it = self._it, None
        close = getattr(it, "close", None)
        if close is not None:
            with self.job.engine.cancel_scope(self.job.cancel):
                close()
