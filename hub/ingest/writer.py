"""The single writer (DESIGN §8): one thread per process owns the Application.

Handlers enqueue uploads and card-office commands and await the answer. The writer drains
the queue in micro-batches — as soon as it is idle, never waiting out a timer — decides every
event of the batch against cached aggregates, commits the batch, and only then resolves the
waiting requests. A full queue is refused at once (the hub answers 503 with Retry-After).
The queue, its bounds and its fair lanes are ``hub.ingest.lanes``; what happens when a batch
fails is ``hub.ingest.isolation``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from domain.application import CampusCard, Item, UploadOutcome, rejected
from domain.facts import UploadResult
from domain.reads import ReadOf
from hub.ingest.isolation import FaultLog, WriterFailed, isolate, unreachable
from hub.ingest.lanes import Command, Lanes, Part, Upload
from hub.ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        self.app = app
        self.loop = loop
        self.metrics = metrics
        self._lanes = Lanes(metrics, queue_max_uploads=queue_max_uploads, batch_max_events=batch_max_events,
                            queue_max_events=queue_max_events, device_max_events=device_max_events)
        self._faults = FaultLog()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finishes every queued job, then ends the thread."""
        self._lanes.stop()
        self._thread.join()

    @property
    def depth(self) -> int:
        return self._lanes.depth

    def admit(self, events: int, device_id: str | None = None) -> None:
        """Reserves room for an upload's events before the hub parses and verifies them, so an
        overloaded hub refuses work before doing any. Every admission ends in ``upload`` or
        ``release``. An upload larger than a bound is still admitted when nothing waits under it."""
        self._lanes.admit(events, device_id)

    def release(self, events: int, device_id: str | None = None) -> None:
        """Gives back an admission that will not become an upload."""
        self._lanes.release(events, device_id)

    async def upload(self, device_id: str, items: Sequence[Item]) -> UploadOutcome:
        """Queues an admitted upload and waits for its outcome, committed."""
        future: asyncio.Future[UploadOutcome] = self.loop.create_future()
        self._lanes.enqueue(Upload(device_id, items, future))
        return await future

    async def run(self, fn: Callable[[CampusCard], T]) -> T:
        """Runs a card-office command on the writer thread, in order with the uploads."""
        self.admit(1)
        future: asyncio.Future[T] = self.loop.create_future()
        self._lanes.enqueue(Command(fn, future))
        return await future

    async def record_read(self, read: ReadOf) -> list[str]:
        """Records a read of a person's records (``CampusCard.record_reads``) as a command; the
        reads that meet in one micro-batch are stored with one save. Returns the accounts read."""
        self.admit(1)
        future: asyncio.Future[list[str]] = self.loop.create_future()
        self._lanes.enqueue(Command(lambda app: app.record_reads([read])[0], future, read=read))
        return await future

    # -- the writer thread -------------------------------------------------

    def _run(self) -> None:
        while (batch := self._lanes.next_batch()) is not None:
            try:
                self._process(batch)
            except Exception as exc:  # noqa: BLE001 - the writer outlives any batch; its waiters hear of it
                log.exception("the writer could not finish a batch of %d jobs", len(batch))
                for job in batch:
                    upload = job.upload if isinstance(job, Part) else None
                    if upload is not None and not upload.finished:
                        self._fail(upload, WriterFailed(str(exc)))
                    elif isinstance(job, Command):
                        self._resolve(job.future, error=WriterFailed(str(exc)))

    def _process(self, batch: list[Part | Command | object]) -> None:
        """Decides the batch; consecutive reads of persons are recorded with one save; the bulk
        chunk at its end (after ``COMMIT``) is committed on its own, and the next one paced by
        the time it took (``Lanes.pace_bulk``)."""
        parts: list[Part] = []
        reads: list[Command] = []
        for job in batch:
            if isinstance(job, Command) and job.read is not None:
                self._record(parts)
                parts = []
                reads.append(job)
                continue
            self._reads(reads)
            reads = []
            if isinstance(job, Part):
                parts.append(job)
                continue
            self._record(parts)
            parts = []
            if isinstance(job, Command):
                self._command(job)
        self._reads(reads)
        bulk = self._record(parts)
        self._lanes.pace_bulk(bulk)

    def _record(self, parts: list[Part]) -> float:
        """Decides and commits ``parts``; returns the seconds it took."""
        if not parts:
            return 0.0
        started = time.perf_counter()
        self._record_parts(parts)
        return time.perf_counter() - started

    def _record_parts(self, parts: list[Part]) -> None:
        """Decides and commits ``parts``; if that fails, isolates the upload at fault."""
        parts = [p for p in parts if not p.upload.finished]
        if not parts:
            return
        started = time.perf_counter()
        try:
            outcomes = self.app.record_swipes([(p.upload.device_id, p.items) for p in parts])
        except Exception as exc:  # noqa: BLE001 - classified: the store, or one upload's fault
            if unreachable(exc):
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

    def _settle(self, part: Part, results: list[UploadResult], next_seq: int, committed: float) -> None:
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

    def _fault(self, part: Part, exc: Exception) -> None:
        """``part`` fails alone (``isolate``): the event at fault is rejected as ``invalid``, the rest
        as ``not_processed``."""
        upload = part.upload
        found = isolate(self.app, upload.device_id, part.items, upload.next_seq)
        if found.unreachable is not None:
            self._faults.store(found.unreachable, 1)
            self._fail(upload, WriterFailed(str(found.unreachable)), committed=found.results, next_seq=found.next_seq)
            return
        results, next_seq = found.results, found.next_seq
        self._faults.upload(upload.device_id, exc)
        if not (results and results[-1]["status"] == "rejected"):
            results.append(rejected(part.items[found.at], "invalid", detail=(
                f"the hub could not record this event ({type(exc).__name__}); it has been logged")))
        part = Part(upload, part.start, part.start + len(results))
        upload.results.extend(results)
        upload.results.extend(rejected(item, "not_processed") for item in upload.items[part.stop:])
        if results:
            upload.next_seq = next_seq
        elif part.start == 0:  # nothing of it was stored: the device's log says what comes next
            upload.next_seq = self.app.next_seq(upload.device_id)
        upload.finished = True
        self.metrics.count_results(upload.results)
        self._resolve(upload.future, value=UploadOutcome(results=upload.results, next_seq=upload.next_seq))

    def _fail(self, upload: Upload, error: Exception, *, committed: list[UploadResult] | None = None,
              next_seq: int = 0) -> None:
        upload.finished = True
        if upload.results or committed:  # part of it is stored: say which, the rest is not
            upload.results.extend(committed or [])
            done = len(upload.results)
            upload.results.extend(rejected(item, "not_processed") for item in upload.items[done:])
            self._resolve(upload.future, value=UploadOutcome(upload.results, next_seq or upload.next_seq))
        else:
            self._resolve(upload.future, error=error)

    def _reads(self, jobs: list[Command]) -> None:
        """Records consecutive reads with one save; if it fails, each of them hears of it."""
        if not jobs:
            return
        try:
            named = self.app.record_reads([job.read for job in jobs if job.read is not None])
        except Exception as exc:  # noqa: BLE001 - raised again in each waiting request's handler
            for job in jobs:
                self._resolve(job.future, error=exc)
        else:
            for job, accounts in zip(jobs, named, strict=True):
                self._resolve(job.future, value=accounts)

    def _command(self, job: Command) -> None:
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

