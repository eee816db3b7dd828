"""The single writer (DESIGN §8): one thread per process owns the Application.

Handlers enqueue uploads and card-office commands into a bounded queue and await the
answer. The writer drains the queue in micro-batches — as soon as it is idle, never
waiting out a timer — decides every event of the batch against cached aggregates,
commits the batch in one transaction, and only then resolves the waiting requests.
A full queue is refused at once (the hub answers 503 with Retry-After). The queue is
bounded twice: in jobs, and in device events admitted but not yet taken by the writer —
counted from before their signatures are checked — so a burst of large offline uploads can
neither queue more than a few seconds of the writer's work nor make the hub verify
signatures of uploads it will refuse.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from domain.application import CampusCard, Item, UploadOutcome
from hub.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")


class Overloaded(Exception):
    """The writer's queue is full: the caller should retry later."""


class WriterFailed(Exception):
    """The batch could not be committed; nothing of it was stored."""


@dataclass(slots=True)
class _Upload:
    device_id: str
    items: Sequence[Item]
    future: asyncio.Future[UploadOutcome]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class _Command:
    fn: Callable[[CampusCard], Any]
    future: asyncio.Future[Any]


_STOP = object()


class IngestWriter:
    def __init__(
        self,
        app: CampusCard,
        loop: asyncio.AbstractEventLoop,
        metrics: Metrics,
        *,
        queue_max_uploads: int,
        batch_max_events: int,
        queue_max_events: int = 1 << 62,
    ) -> None:
        assert queue_max_uploads > 0 and batch_max_events > 0 and queue_max_events > 0
        self.app = app
        self.loop = loop
        self.metrics = metrics
        self.batch_max_events = batch_max_events
        self.queue_max_events = queue_max_events
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_max_uploads)
        self._queued_events = 0  # events of the jobs in the queue; guarded by _queued_lock
        self._queued_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finishes every queued job, then ends the thread."""
        self._queue.put(_STOP)
        self._thread.join()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def admit(self, events: int) -> None:
        """Reserves room for an upload's events before the hub parses and verifies them, so an
        overloaded hub refuses work before doing any. Every admission ends in ``upload`` or
        ``release``. An upload larger than the bound is still admitted when nothing waits."""
        with self._queued_lock:
            full = self._queued_events > 0 and self._queued_events + events > self.queue_max_events
            if not full:
                self._queued_events += events
        if full:
            self.metrics.shed.inc()
            raise Overloaded

    def release(self, events: int) -> None:
        """Gives back an admission that will not become an upload."""
        with self._queued_lock:
            self._queued_events -= events

    async def upload(self, device_id: str, items: Sequence[Item]) -> UploadOutcome:
        """Queues an admitted upload and waits for its outcome, committed."""
        future: asyncio.Future[UploadOutcome] = self.loop.create_future()
        self._enqueue(_Upload(device_id, items, future))
        return await future

    async def run(self, fn: Callable[[CampusCard], T]) -> T:
        """Runs a card-office command on the writer thread, in order with the uploads."""
        self.admit(1)
        future: asyncio.Future[T] = self.loop.create_future()
        self._enqueue(_Command(fn, future))
        return await future

    def _enqueue(self, job: _Upload | _Command) -> None:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.release(_events(job))
            self.metrics.shed.inc()
            raise Overloaded from None
        self.metrics.queue_depth.set(self._queue.qsize())

    def _taken(self, job: Any) -> int:
        events = _events(job) if job is not _STOP else 0
        with self._queued_lock:
            self._queued_events -= events
        return events

    # -- the writer thread -------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            jobs = [self._queue.get()]
            events = self._taken(jobs[0])
            while events < self.batch_max_events:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                jobs.append(job)
                events += self._taken(job)
            if _STOP in jobs:
                stopping = True
                jobs = [j for j in jobs if j is not _STOP]
            self.metrics.queue_depth.set(self._queue.qsize())
            self._process(jobs)

    def _process(self, jobs: list[Any]) -> None:
        uploads: list[_Upload] = []
        for job in jobs:
            if isinstance(job, _Upload):
                uploads.append(job)
                continue
            self._record(uploads)
            uploads = []
            self._command(job)
        self._record(uploads)

    def _record(self, uploads: list[_Upload]) -> None:
        if not uploads:
            return
        started = time.perf_counter()
        try:
            outcomes = self.app.record_swipes([(u.device_id, u.items) for u in uploads])
        except Exception as exc:  # noqa: BLE001 - every waiter must hear of it; nothing was stored
            log.exception("ingest batch of %d uploads failed; none was acknowledged", len(uploads))
            for upload in uploads:
                self._resolve(upload.future, error=WriterFailed(str(exc)))
            return
        committed = time.perf_counter()
        self.metrics.batch_seconds.observe(committed - started)
        self.metrics.batch_events.observe(sum(len(u.items) for u in uploads))
        for upload, outcome in zip(uploads, outcomes, strict=True):
            self.metrics.count_results(outcome.results)
            self.metrics.upload_wait_seconds.observe(committed - upload.enqueued)
            self._resolve(upload.future, value=outcome)

    def _command(self, job: _Command) -> None:
        try:
            value = job.fn(self.app)
        except Exception as exc:  # noqa: BLE001 - raised again in the waiting request's handler
            self._resolve(job.future, error=exc)
        else:
            self._resolve(job.future, value=value)

    def _resolve(self, future: asyncio.Future[Any], *, value: Any = None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if future.done():  # the request went away; the outcome is stored all the same
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

        self.loop.call_soon_threadsafe(settle)


def _events(job: Any) -> int:
    return len(job.items) if isinstance(job, _Upload) else 1
