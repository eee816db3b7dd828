"""The single writer (DESIGN §8): one thread per process owns the Application.

Handlers enqueue uploads and card-office commands and await the answer. The writer drains
the queue in micro-batches — as soon as it is idle, never waiting out a timer — decides every
event of the batch against cached aggregates, commits the batch, and only then resolves the
waiting requests. A full queue is refused at once (the hub answers 503 with Retry-After).

Bounds (DESIGN §9). The queue is bounded in jobs, in device events admitted but not yet taken
by the writer — counted from before their signatures are checked, so an overloaded hub verifies
nothing it will refuse — and in events per device, so one device's flood is refused (503) before
it can fill the room of the others.

Fair admission. Single-event uploads and commands wait in a fast lane; larger uploads in a bulk
lane. A micro-batch takes every waiting fast job (up to ``batch_max_events``) and, while single
swipes are coming in, at most ``BULK_EVENTS_BESIDE_SINGLES`` bulk events besides, splitting a large upload
across micro-batches, so a single swipe never waits behind more than one such bulk chunk. Order is kept where it matters: a
command runs after every job enqueued before it and before every job enqueued after it, and a
device's uploads are decided in the order they came (its singles join the bulk lane while it
has a bulk upload waiting).

Isolation. A batch that fails for any reason but an unreachable store is retried in halves, so
the other uploads commit and only the upload at fault fails; within it, the events before the
one at fault are stored and that one is ``rejected``/``invalid`` (the rest ``not_processed``).
An unreachable store fails the whole batch at once (``WriterFailed``: 503, nothing stored).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from eventsourcing import persistence

from domain.application import CampusCard, Item, UploadOutcome, rejected
from hub.ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")

# While single swipes are coming in (one was enqueued within SINGLES_RECENT_S), a micro-batch
# takes at most this many bulk events — what a single swipe may wait behind — and bulk work is
# paced (below). Otherwise bulk uploads fill whole micro-batches, as many as ``batch_max_events``.
# Measured with ``cardhub bench --flood`` (p99 of single swipes during a flood / without it):
# 100 events unpaced 8×, 25 unpaced 2.7–3.7×, 25 at half the time 1.6–2.9×, 10 at a third 1.7–1.9×.
BULK_EVENTS_BESIDE_SINGLES = 10
SINGLES_RECENT_S = 1.0
BULK_PAUSE_PER_SECOND = 2.0  # … and bulk work takes at most a third of the writer's time (pause = 2 × work)
DEVICE_SHARE_OF_QUEUE = 4  # one device may hold at most 1/4 of the queued events
FAULT_LOG_EVERY_S = 60.0  # one line per device and kind of fault per minute, not one per resend
FAULT_LOG_KEYS_MAX = 1024
_UNREACHABLE = (
    persistence.OperationalError, persistence.InterfaceError, psycopg.OperationalError, psycopg.InterfaceError,
    OSError,
)


class Overloaded(Exception):
    """The writer's queue is full: the caller should retry later."""


class WriterFailed(Exception):
    """The batch could not be committed; nothing of it was stored."""


@dataclass(slots=True)
class _Upload:
    device_id: str
    items: Sequence[Item]
    future: asyncio.Future[UploadOutcome]
    ticket: int = 0
    enqueued: float = field(default_factory=time.perf_counter)
    taken: int = 0  # items handed to the writer so far (a bulk upload is taken in chunks)
    results: list[dict[str, Any]] = field(default_factory=list)
    next_seq: int = 1
    finished: bool = False


@dataclass(slots=True)
class _Command:
    fn: Callable[[CampusCard], Any]
    future: asyncio.Future[Any]
    ticket: int = 0


@dataclass(slots=True)
class _Part:
    """The run of one upload's items decided in this micro-batch."""

    upload: _Upload
    start: int
    stop: int

    @property
    def items(self) -> Sequence[Item]:
        return self.upload.items[self.start:self.stop]


_COMMIT = object()  # in a micro-batch: commit what comes before it on its own


class IngestWriter:
    def __init__(
        self,
        app: CampusCard,
        loop: asyncio.AbstractEventLoop,
        metrics: IngestMetrics,
        *,
        queue_max_uploads: int,
        batch_max_events: int,
        queue_max_events: int = 1 << 62,
        device_max_events: int | None = None,
    ) -> None:
        assert queue_max_uploads > 0 and batch_max_events > 0 and queue_max_events > 0
        self.app = app
        self.loop = loop
        self.metrics = metrics
        self.batch_max_events = batch_max_events
        self.queue_max_uploads = queue_max_uploads
        self.queue_max_events = queue_max_events
        self.device_max_events = device_max_events or max(1, queue_max_events // DEVICE_SHARE_OF_QUEUE)
        self._lock = threading.Lock()  # guards everything below
        self._ready = threading.Condition(self._lock)
        self._fast: deque[_Upload | _Command] = deque()
        self._bulk: deque[_Upload] = deque()
        self._jobs = 0
        self._tickets = 0
        self._stopping = False
        self._queued_events = 0  # admitted and not yet taken by the writer
        self._device_events: dict[str, int] = {}  # … per device
        self._commands: deque[int] = deque()  # tickets of the commands waiting in the fast lane
        self._fast_by_device: dict[str, int] = {}  # uploads waiting in the fast lane, per device
        self._bulk_by_device: dict[str, int] = {}  # … in the bulk lane
        self._faults = _FaultLog()
        self._last_single = -SINGLES_RECENT_S  # time.monotonic() of the last single-event upload
        self._bulk_resume_at = 0.0  # time.monotonic() before which no bulk chunk is taken
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finishes every queued job, then ends the thread."""
        with self._lock:
            self._stopping = True
            self._ready.notify()
        self._thread.join()

    @property
    def depth(self) -> int:
        return self._jobs

    def admit(self, events: int, device_id: str | None = None) -> None:
        """Reserves room for an upload's events before the hub parses and verifies them, so an
        overloaded hub refuses work before doing any. Every admission ends in ``upload`` or
        ``release``. An upload larger than a bound is still admitted when nothing waits under it."""
        with self._lock:
            full = self._queued_events > 0 and self._queued_events + events > self.queue_max_events
            mine = self._device_events.get(device_id, 0) if device_id is not None else 0
            full = full or (mine > 0 and mine + events > self.device_max_events)
            if not full:
                self._queued_events += events
                if device_id is not None:
                    self._device_events[device_id] = mine + events
        if full:
            self.metrics.shed.inc()
            raise Overloaded

    def release(self, events: int, device_id: str | None = None) -> None:
        """Gives back an admission that will not become an upload."""
        with self._lock:
            self._untake(events, device_id)

    def _untake(self, events: int, device_id: str | None) -> None:
        self._queued_events -= events
        if device_id is not None:
            left = self._device_events[device_id] - events
            if left:
                self._device_events[device_id] = left
            else:
                del self._device_events[device_id]

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
        with self._lock:
            if self._jobs >= self.queue_max_uploads:
                full = True
                if isinstance(job, _Upload):
                    self._untake(len(job.items), job.device_id)
                else:
                    self._untake(1, None)
            else:
                full = False
                self._tickets += 1
                job.ticket = self._tickets
                self._jobs += 1
                if isinstance(job, _Command):
                    self._fast.append(job)
                    self._commands.append(job.ticket)
                elif len(job.items) == 1 and job.device_id not in self._bulk_by_device:
                    self._fast.append(job)
                    self._last_single = time.monotonic()
                    _count(self._fast_by_device, job.device_id, 1)
                else:
                    self._bulk.append(job)
                    _count(self._bulk_by_device, job.device_id, 1)
                self._ready.notify()
            depth = self._jobs
        if full:
            self.metrics.shed.inc()
            raise Overloaded
        self.metrics.queue_depth.set(depth)

    # -- the writer thread -------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._fast and not (self._bulk and self._bulk_due()) and not self._stopping:
                    self._ready.wait(self._bulk_resume_at - time.monotonic() if self._bulk else None)
                if not self._fast and not self._bulk:
                    return  # stopping, and everything queued is done
                batch = self._take()
                depth = self._jobs
            self.metrics.queue_depth.set(depth)
            try:
                self._process(batch)
            except Exception as exc:  # noqa: BLE001 - the writer outlives any batch; its waiters hear of it
                log.exception("the writer could not finish a batch of %d jobs", len(batch))
                for job in batch:
                    upload = job.upload if isinstance(job, _Part) else None
                    if upload is not None and not upload.finished:
                        self._fail(upload, WriterFailed(str(exc)))
                    elif isinstance(job, _Command):
                        self._resolve(job.future, error=WriterFailed(str(exc)))

    def _take(self) -> list[_Part | _Command | object]:
        """One micro-batch, in the order it must be decided (called with the lock held)."""
        batch: list[_Part | _Command | object] = []
        budget = self.batch_max_events
        while self._fast and budget > 0:
            job = self._fast[0]
            if isinstance(job, _Command):
                if self._bulk and self._bulk[0].ticket < job.ticket:
                    break  # bulk work enqueued before the command goes first
                self._untake(1, None)
                self._commands.popleft()
                batch.append(job)
            else:
                _count(self._fast_by_device, job.device_id, -1)
                self._untake(len(job.items), job.device_id)
                job.taken = len(job.items)
                batch.append(_Part(job, 0, job.taken))
            self._fast.popleft()
            self._jobs -= 1
            budget -= 1
        bulk_budget = self._bulk_budget() if self._bulk_due() else 0
        if batch:
            batch.append(_COMMIT)  # the fast jobs are committed and answered before the bulk chunk
        while self._bulk and bulk_budget > 0:
            job = self._bulk[0]
            if job.finished:  # failed in an earlier chunk: what was not taken is given back
                self._drop(job)
                continue
            if (self._commands and self._commands[0] < job.ticket) or job.device_id in self._fast_by_device:
                break  # a command enqueued before it, or this device's own earlier upload, goes first
            stop = min(len(job.items), job.taken + bulk_budget)
            self._untake(stop - job.taken, job.device_id)
            batch.append(_Part(job, job.taken, stop))
            bulk_budget -= stop - job.taken
            job.taken = stop
            if stop == len(job.items):
                self._drop(job)
        return batch

    def _bulk_due(self) -> bool:
        """Whether a bulk chunk may be taken now: its pause is over, or a command waits for it."""
        if self._stopping or time.monotonic() >= self._bulk_resume_at:
            return True
        return bool(self._commands and self._bulk and self._bulk[0].ticket < self._commands[0])

    def _bulk_budget(self) -> int:
        if time.monotonic() - self._last_single > SINGLES_RECENT_S:
            return self.batch_max_events
        return min(self.batch_max_events, BULK_EVENTS_BESIDE_SINGLES)

    def _drop(self, job: _Upload) -> None:
        self._bulk.popleft()
        self._jobs -= 1
        _count(self._bulk_by_device, job.device_id, -1)
        if job.taken < len(job.items):
            self._untake(len(job.items) - job.taken, job.device_id)
            job.taken = len(job.items)

    def _process(self, batch: list[_Part | _Command | object]) -> None:
        """Decides the batch; the bulk chunk at its end (after ``_COMMIT``) is committed on
        its own, and while single swipes come in, the next bulk chunk waits in proportion to
        the time this one took, so that bulk work leaves room (CPU and the store) to theirs."""
        parts: list[_Part] = []
        for job in batch:
            if isinstance(job, _Part):
                parts.append(job)
                continue
            self._record(parts)
            parts = []
            if isinstance(job, _Command):
                self._command(job)
        bulk = self._record(parts)
        if bulk and time.monotonic() - self._last_single <= SINGLES_RECENT_S:
            self._bulk_resume_at = time.monotonic() + bulk * BULK_PAUSE_PER_SECOND

    def _record(self, parts: list[_Part]) -> float:
        """Decides and commits ``parts``; returns the seconds it took."""
        if not parts:
            return 0.0
        started = time.perf_counter()
        self._record_parts(parts)
        return time.perf_counter() - started

    def _record_parts(self, parts: list[_Part]) -> None:
        """Decides and commits ``parts``; if that fails, isolates the upload at fault."""
        parts = [p for p in parts if not p.upload.finished]
        if not parts:
            return
        started = time.perf_counter()
        try:
            outcomes = self.app.record_swipes([(p.upload.device_id, p.items) for p in parts])
        except Exception as exc:  # noqa: BLE001 - classified: the store, or one upload's fault
            if _unreachable(exc):
                self._faults.store(exc, len(parts))
                for part in parts:
                    self._fail(part.upload, WriterFailed(str(exc)))
                return
            if len(parts) == 1:
                self._fault(parts[0], exc)
                return
            half = len(parts) // 2
            self._record_parts(parts[:half])
            self._record_parts(parts[half:])
            return
        committed = time.perf_counter()
        self.metrics.batch_seconds.observe(committed - started)
        self.metrics.batch_events.observe(sum(p.stop - p.start for p in parts))
        for part, outcome in zip(parts, outcomes, strict=True):
            self._settle(part, outcome.results, outcome.next_seq, committed)

    def _settle(self, part: _Part, results: list[dict[str, Any]], next_seq: int, committed: float) -> None:
        """Adds one part's committed results to its upload; answers it once it is complete."""
        upload = part.upload
        upload.results.extend(results)
        upload.next_seq = next_seq
        if part.stop < len(upload.items) and upload.results and upload.results[-1]["status"] == "rejected":
            upload.results.extend(rejected(item, "not_processed") for item in upload.items[part.stop:])
        elif part.stop < len(upload.items):
            return  # more chunks to come
        upload.finished = True
        self.metrics.count_results(upload.results)
        self.metrics.upload_wait_seconds.observe(committed - upload.enqueued)
        self._resolve(upload.future, value=UploadOutcome(results=upload.results, next_seq=upload.next_seq))

    def _fault(self, part: _Part, exc: Exception) -> None:
        """``part`` fails alone, on freshly loaded aggregates: finds the event at fault by
        committing ever longer runs of the events before it (a binary search), rejects that
        event as ``invalid`` and the rest as ``not_processed``."""
        upload = part.upload
        items = part.items
        lo, hi = 0, len(items)  # items[:lo] are committed; items[:hi] fail
        results: list[dict[str, Any]] = []
        next_seq = upload.next_seq
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                outcome = self.app.record_swipes([(upload.device_id, items[lo:mid])])[0]
            except Exception as again:  # noqa: BLE001 - the same classification as a batch
                if _unreachable(again):
                    self._faults.store(again, 1)
                    self._fail(upload, WriterFailed(str(again)), committed=results, next_seq=next_seq)
                    return
                hi = mid
                continue
            results.extend(outcome.results)
            next_seq = outcome.next_seq
            lo = mid
            if results and results[-1]["status"] == "rejected":
                break  # the events after a rejection are not processed anyway
        self._faults.upload(upload.device_id, exc)
        if not (results and results[-1]["status"] == "rejected"):
            results.append(rejected(items[lo], "invalid", detail=(
                f"the hub could not record this event ({type(exc).__name__}); it has been logged")))
        part = _Part(upload, part.start, part.start + len(results))
        upload.results.extend(results)
        upload.results.extend(rejected(item, "not_processed") for item in upload.items[part.stop:])
        if results:
            upload.next_seq = next_seq
        elif part.start == 0:  # nothing of it was stored: the device's log says what comes next
            upload.next_seq = self.app.next_seq(upload.device_id)
        upload.finished = True
        self.metrics.count_results(upload.results)
        self._resolve(upload.future, value=UploadOutcome(results=upload.results, next_seq=upload.next_seq))

    def _fail(self, upload: _Upload, error: Exception, *, committed: list[dict[str, Any]] | None = None,
              next_seq: int = 0) -> None:
        upload.finished = True
        if upload.results or committed:  # part of it is stored: say which, the rest is not
            upload.results.extend(committed or [])
            done = len(upload.results)
            upload.results.extend(rejected(item, "not_processed") for item in upload.items[done:])
            self._resolve(upload.future, value=UploadOutcome(upload.results, next_seq or upload.next_seq))
        else:
            self._resolve(upload.future, error=error)

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


def _count(counts: dict[str, int], key: str, delta: int) -> None:
    left = counts.get(key, 0) + delta
    if left:
        counts[key] = left
    else:
        del counts[key]


def _unreachable(exc: BaseException) -> bool:
    """Whether the store could not be reached (not the fault of any upload): the error or one
    it was raised from."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, _UNREACHABLE):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _FaultLog:
    """Logs a kind of fault once with its traceback, then at most once a minute with a count."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # key -> (last logged, since)

    def upload(self, device_id: str, exc: Exception) -> None:
        self._log((device_id, type(exc).__name__), exc, f"an upload of device {device_id} could not be recorded "
                                                        f"({type(exc).__name__}: {exc}); answered as rejected")

    def store(self, exc: Exception, uploads: int) -> None:
        self._log(("", type(exc).__name__), exc, f"the event store is unreachable ({type(exc).__name__}: {exc}); "
                                                 f"{uploads} uploads answered 503")

    def _log(self, key: tuple[str, str], exc: Exception, message: str) -> None:
        now = time.monotonic()
        last = self._seen.get(key)
        if last is None:
            if len(self._seen) >= FAULT_LOG_KEYS_MAX:
                self._seen.clear()
            self._seen[key] = (now, 0)
            log.error("%s", message, exc_info=exc)
        elif now - last[0] >= FAULT_LOG_EVERY_S:
            self._seen[key] = (now, 0)
            log.error("%s (%d more like it in the last %.0f s)", message, last[1], now - last[0])
        else:
            self._seen[key] = (last[0], last[1] + 1)
