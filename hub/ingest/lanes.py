"""The writer's queue (DESIGN §9): its two lanes, its bounds, and the order a micro-batch takes jobs in.

Bounds. The queue is bounded in jobs, in device events admitted but not yet taken
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
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.application import CampusCard, Item, UploadOutcome
from domain.facts import UploadResult
from domain.reads import ReadOf
from hub.ingest.metrics import IngestMetrics

# While single swipes are coming in (one was enqueued within SINGLES_RECENT_S), a micro-batch
# takes at most this many bulk events — what a single swipe may wait behind — and bulk work is
# paced (below). Otherwise bulk uploads fill whole micro-batches, as many as ``batch_max_events``.
# Measured with ``cardhub bench --flood`` (p99 of single swipes during a flood / without it):
# 100 events unpaced 8×, 25 unpaced 2.7–3.7×, 25 at half the time 1.6–2.9×, 10 at a third 1.7–1.9×.
BULK_EVENTS_BESIDE_SINGLES = 10
SINGLES_RECENT_S = 1.0
BULK_PAUSE_PER_SECOND = 2.0  # … and bulk work takes at most a third of the writer's time (pause = 2 × work)
DEVICE_SHARE_OF_QUEUE = 4  # one device may hold at most 1/4 of the queued events


class Overloaded(Exception):
    """The writer's queue is full: the caller should retry later."""


@dataclass(slots=True)
class Upload:
    device_id: str
    items: Sequence[Item]
    future: asyncio.Future[UploadOutcome]
    ticket: int = 0
    enqueued: float = field(default_factory=time.perf_counter)
    taken: int = 0  # items handed to the writer so far (a bulk upload is taken in chunks)
    results: list[UploadResult] = field(default_factory=list)
    next_seq: int = 1
    finished: bool = False


@dataclass(slots=True)
class Command:
    fn: Callable[[CampusCard], Any]
    future: asyncio.Future[Any]
    ticket: int = 0
    read: ReadOf | None = None  # a read of a person to record: consecutive ones share one save


@dataclass(slots=True)
class Part:
    """The run of one upload's items decided in this micro-batch."""

    upload: Upload
    start: int
    stop: int

    @property
    def items(self) -> Sequence[Item]:
        return self.upload.items[self.start:self.stop]


COMMIT = object()  # in a micro-batch: commit what comes before it on its own


class Lanes:
    """The jobs waiting for the writer thread, and what they hold of the queue's bounds; every
    method takes the one lock (``next_batch`` waits on it for work)."""

    def __init__(
        self, metrics: IngestMetrics, *, queue_max_uploads: int, batch_max_events: int, queue_max_events: int,
        device_max_events: int | None,
    ) -> None:
        assert queue_max_uploads > 0 and batch_max_events > 0 and queue_max_events > 0
        self.metrics = metrics
        self.batch_max_events = batch_max_events
        self.queue_max_uploads = queue_max_uploads
        self.queue_max_events = queue_max_events
        self.device_max_events = device_max_events or max(1, queue_max_events // DEVICE_SHARE_OF_QUEUE)
        self._lock = threading.Lock()  # guards everything below
        self._ready = threading.Condition(self._lock)
        self._fast: deque[Upload | Command] = deque()
        self._bulk: deque[Upload] = deque()
        self._jobs = 0
        self._tickets = 0
        self._stopping = False
        self._queued_events = 0  # admitted and not yet taken by the writer
        self._device_events: dict[str, int] = {}  # … per device
        self._commands: deque[int] = deque()  # tickets of the commands waiting in the fast lane
        self._fast_by_device: dict[str, int] = {}  # uploads waiting in the fast lane, per device
        self._bulk_by_device: dict[str, int] = {}  # … in the bulk lane
        self._last_single = -SINGLES_RECENT_S  # time.monotonic() of the last single-event upload
        self._bulk_resume_at = 0.0  # time.monotonic() before which no bulk chunk is taken

    def stop(self) -> None:
        """Wakes the writer thread to finish every queued job and end."""
        with self._lock:
            self._stopping = True
            self._ready.notify()

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

    def enqueue(self, job: Upload | Command) -> None:
        with self._lock:
            if self._jobs >= self.queue_max_uploads:
                full = True
                if isinstance(job, Upload):
                    self._untake(len(job.items), job.device_id)
                else:
                    self._untake(1, None)
            else:
                full = False
                self._tickets += 1
                job.ticket = self._tickets
                self._jobs += 1
                if isinstance(job, Command):
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

    def next_batch(self) -> list[Part | Command | object] | None:
        """Waits for the next micro-batch; None once stopping, and everything queued is done."""
        with self._lock:
            while not self._fast and not (self._bulk and self._bulk_due()) and not self._stopping:
                self._ready.wait(self._bulk_resume_at - time.monotonic() if self._bulk else None)
            if not self._fast and not self._bulk:
                return None  # stopping, and everything queued is done
            batch = self._take()
            depth = self._jobs
        self.metrics.queue_depth.set(depth)
        return batch

    def _take(self) -> list[Part | Command | object]:
        """One micro-batch, in the order it must be decided (called with the lock held)."""
        batch: list[Part | Command | object] = []
        budget = self.batch_max_events
        while self._fast and budget > 0:
            job = self._fast[0]
            if isinstance(job, Command):
                if self._bulk and self._bulk[0].ticket < job.ticket:
                    break  # bulk work enqueued before the command goes first
                self._untake(1, None)
                self._commands.popleft()
                batch.append(job)
            else:
                _count(self._fast_by_device, job.device_id, -1)
                self._untake(len(job.items), job.device_id)
                job.taken = len(job.items)
                batch.append(Part(job, 0, job.taken))
            self._fast.popleft()
            self._jobs -= 1
            budget -= 1
        bulk_budget = self._bulk_budget() if self._bulk_due() else 0
        if batch:
            batch.append(COMMIT)  # the fast jobs are committed and answered before the bulk chunk
        while self._bulk and bulk_budget > 0:
            job = self._bulk[0]
            if job.finished:  # failed in an earlier chunk: what was not taken is given back
                self._drop(job)
                continue
            if (self._commands and self._commands[0] < job.ticket) or job.device_id in self._fast_by_device:
                break  # a command enqueued before it, or this device's own earlier upload, goes first
            stop = min(len(job.items), job.taken + bulk_budget)
            self._untake(stop - job.taken, job.device_id)
            batch.append(Part(job, job.taken, stop))
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

    def _drop(self, job: Upload) -> None:
        self._bulk.popleft()
        self._jobs -= 1
        _count(self._bulk_by_device, job.device_id, -1)
        if job.taken < len(job.items):
            self._untake(len(job.items) - job.taken, job.device_id)
            job.taken = len(job.items)

    def pace_bulk(self, bulk_s: float) -> None:
        """While single swipes come in, the next bulk chunk waits in proportion to the
        time this one took, so that bulk work leaves room (CPU and the store) to theirs."""
        if bulk_s and time.monotonic() - self._last_single <= SINGLES_RECENT_S:
            self._bulk_resume_at = time.monotonic() + bulk_s * BULK_PAUSE_PER_SECOND


def _count(counts: dict[str, int], key: str, delta: int) -> None:
    left = counts.get(key, 0) + delta
    if left:
        counts[key] = left
    else:
        del counts[key]
