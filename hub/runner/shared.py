"""The shared runner: every projection behind one subscription, in one thread, each failing alone."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Notification, Tracking
from eventsourcing.projection import ApplicationSubscription
from eventsourcing.utils import EnvType

from domain.application import CampusCard
from hub.runner.hooks import _coalesce_pulls, _fetched_but_unprocessed, _next_within
from projections.base import STORE_FAULTS, BatchingProjection, View, flush_together
from projections.catalogue import PROJECTIONS, open_views
from projections.failures import FailureLog, one_line

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Slot:
    """One projection in the runner: running, failed (waiting for its retry), or catching up."""

    projection_class: type[BatchingProjection[Any]]
    view: View
    projection: BatchingProjection[Any] | None
    position: int  # the last notification handed to it (or, catching up, applied by it)
    flushed: int  # the last notification committed with its tracking record
    first_unflushed: int | None = None  # the first notification staged since the last commit
    failed_at: int | None = None  # set while failed: the notification id it failed on
    retry_at: float = 0.0
    backoff_s: float = 0.0
    one_by_one_until: int = 0  # catching up, write each event alone up to here (to find a bad one)
    clear_after: int | None = None  # the failure recorded at this position is cleared once past it

    @property
    def name(self) -> str:
        return self.projection_class.name


class SharedRunner:
    """Every projection behind one subscription, in one thread.

    Each event is fetched and decoded once and handed to every projection that has not
    applied it yet (each resumes from its own tracking record, so nothing is applied twice).
    Staged view writes are flushed — every view in one transaction, with the tracking
    records — once ``MAX_BATCH`` events are staged, once the first of them has waited
    ``MAX_DELAY_S``, or when the subscription has nothing more already fetched and nothing
    arrives within ``LINGER_S``: a burst is written in large transactions, a trickle a few
    events at a time, and a steady stream never holds a balance back for longer than
    ``MAX_DELAY_S``. (Without that bound, a stream of 100 swipes/s, whose next events always
    arrived within ``LINGER_S``, was flushed only every 1,000 events: the views lagged up to
    5 s behind.)

    A projection that raises — in its code, or in its statements (``flush_together`` then
    commits the others without it) — is failed alone: its staged writes are dropped, the
    failure is recorded in ``projection_failures`` (``projections.failures``) for ``/healthz``,
    and the others go on. After ``RETRY_FIRST_S`` (doubling up to ``RETRY_MAX_S``) a fresh
    instance is tried again from its tracking record: it reads the events it missed from the
    store in slices of ``CATCH_UP_SLICE_S`` between the others' flushes — one event per
    transaction over the batch that failed, so the bad one is named — and rejoins the others
    once it has caught up with them. A store fault (``STORE_FAULTS``) still stops the runner,
    and its supervisor starts a new one."""

    MAX_BATCH = 1000
    MAX_DELAY_S = 0.1
    LINGER_S = 0.02
    PULL_DELAY_S = 0.005
    IDLE_TICK_S = 0.25  # how often an idle runner looks for retries that are due
    RETRY_FIRST_S = 5.0
    RETRY_MAX_S = 60.0
    CATCH_UP_SLICE_S = 0.2
    CATCH_UP_BATCH = 500

    def __init__(self, env: EnvType, views_env: EnvType) -> None:
        self.env = dict(env)
        self.slots: list[_Slot] = []
        views = open_views({**os.environ, **env, **views_env})
        for projection_class, _ in PROJECTIONS:
            view = views[projection_class.name]
            position = view.max_tracking_id(CampusCard.name) or 0
            self.slots.append(_Slot(projection_class, view, projection_class(view, self.env), position, position))
        self.failures = FailureLog(self.slots[0].view.datastore)
        self.failures.create()
        failing = self.failures.failing()  # by an earlier runner: cleared once this one gets past
        for slot in self.slots:
            slot.clear_after = failing.get(slot.name)
        self.running = list(self.slots)
        self.catching_up: list[_Slot] = []
        self.app = CampusCard(env=self.env)
        self.last = min(slot.position for slot in self.slots)  # the last notification handed out
        self.subscription: ApplicationSubscription[Any] = ApplicationSubscription(self.app, gt=self.last)
        self.has_more = _fetched_but_unprocessed(self.subscription)
        self._next = _next_within(self.subscription)
        _coalesce_pulls(self.subscription, self.PULL_DELAY_S)
        self.error: BaseException | None = None
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="projections", daemon=True)

    def start(self) -> None:
        self.subscription.__enter__()
        self._thread.start()

    def _run(self) -> None:
        staged, due = 0, 0.0
        try:
            while not self.stopped.is_set():
                notification = self._next(self.IDLE_TICK_S)
                if notification is None:  # nothing arrived: a moment for the retries that are due
                    if staged:
                        self._flush()
                        staged = 0
                    self._retry_due()
                    continue
                self._hand_out(notification)
                if staged == 0:
                    due = time.monotonic() + self.MAX_DELAY_S
                staged += 1
                if staged >= self.MAX_BATCH or not self._more_soon(due):
                    self._flush()
                    staged = 0
                    self._retry_due()
        except StopIteration:
            pass
        except BaseException as exc:  # noqa: BLE001 - kept for the supervisor, which logs it
            self.error = exc
        finally:
            self.stopped.set()

    def _hand_out(self, notification: Notification) -> None:
        tracking = Tracking(self.app.name, notification.id)
        self.last = notification.id
        try:
            domain_event = self.app.mapper.to_domain_event(notification)
        except Exception as exc:  # noqa: BLE001 - an event no projection can read fails them all, recorded
            for slot in list(self.running):
                if notification.id > slot.position:
                    self._fail(slot, notification.id, exc)
            return
        for slot in list(self.running):
            if notification.id > slot.position:
                projection = slot.projection
                assert projection is not None
                try:
                    projection.process_stored(notification, domain_event, tracking)
                except Exception as exc:  # noqa: BLE001 - this projection's failure, recorded by _fail
                    self._fail(slot, notification.id, exc)
                    continue
                slot.position = notification.id
                if slot.first_unflushed is None:
                    slot.first_unflushed = notification.id

    def _more_soon(self, due: float) -> bool:
        """Whether another event is fetched within ``LINGER_S`` and before ``due``."""
        now = time.monotonic()
        if now >= due:
            return False
        deadline = min(now + self.LINGER_S, due)
        while not self.has_more():
            if time.monotonic() >= deadline or self.stopped.is_set():
                return False
            time.sleep(self.LINGER_S / 8)
        return True

    def _flush(self) -> None:
        by_projection = {id(slot.projection): slot for slot in self.running}
        failed = flush_together([slot.projection for slot in self.running if slot.projection is not None])
        for projection, exc in failed:
            slot = by_projection[id(projection)]
            self._fail(slot, slot.first_unflushed or slot.position, exc, batch_end=slot.position)
        for slot in self.running:
            self._committed(slot)

    def _committed(self, slot: _Slot) -> None:
        slot.flushed, slot.first_unflushed = slot.position, None
        if slot.clear_after is not None and slot.flushed >= slot.clear_after:
            self.failures.clear(slot.name)
            log.info("projection %s recovered: past notification %d", slot.name, slot.clear_after)
            slot.clear_after, slot.backoff_s = None, 0.0

    def _fail(self, slot: _Slot, position: int, exc: BaseException, batch_end: int | None = None) -> None:
        """Takes the projection out, drops what it staged, records why, and schedules its retry."""
        if isinstance(exc, STORE_FAULTS):
            raise exc
        if slot in self.running:
            self.running.remove(slot)
        if slot in self.catching_up:
            self.catching_up.remove(slot)
        slot.projection, slot.first_unflushed = None, None
        slot.failed_at, slot.clear_after = position, position
        slot.one_by_one_until = max(slot.one_by_one_until, batch_end or position)
        slot.backoff_s = min(max(slot.backoff_s * 2, self.RETRY_FIRST_S), self.RETRY_MAX_S)
        slot.retry_at = time.monotonic() + slot.backoff_s
        error = one_line(exc)
        what = f"notification {position}" if batch_end in (None, position) else f"notifications {position}–{batch_end}"
        log.error("projection %s failed on %s: %s; trying it again in %.0f s", slot.name, what, error, slot.backoff_s)
        self.failures.record(slot.name, position, error)

    def _retry_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.failed_at is not None and slot.retry_at <= now:
                self._restart(slot)
        for slot in list(self.catching_up):
            self._catch_up(slot, time.monotonic() + self.CATCH_UP_SLICE_S)

    def _restart(self, slot: _Slot) -> None:
        """A fresh instance, from its tracking record (the audit log reloads its tree's edge)."""
        slot.failed_at = None
        try:
            slot.projection = slot.projection_class(slot.view, self.env)
        except STORE_FAULTS:
            raise
        except Exception as exc:  # noqa: BLE001 - its failure to start, recorded by _fail
            self._fail(slot, slot.flushed + 1, exc)
            return
        slot.position = slot.flushed = slot.view.max_tracking_id(self.app.name) or 0
        self.catching_up.append(slot)

    def _catch_up(self, slot: _Slot, deadline: float) -> None:
        """Applies the events between the projection's position and the others', alone."""
        while slot.position < self.last and time.monotonic() < deadline:
            projection = slot.projection
            assert projection is not None
            one_by_one = slot.position < slot.one_by_one_until
            notifications = self.app.recorder.select_notifications(
                start=slot.position, limit=1 if one_by_one else self.CATCH_UP_BATCH, stop=self.last,
                inclusive_of_start=False,
            )
            if not notifications:
                slot.position = self.last
                break
            for notification in notifications:
                try:
                    domain_event = self.app.mapper.to_domain_event(notification)
                    projection.process_stored(notification, domain_event, Tracking(self.app.name, notification.id))
                except Exception as exc:  # noqa: BLE001 - this projection's failure, recorded by _fail
                    self._fail(slot, notification.id, exc)
                    return
            slot.position = notifications[-1].id
            for _, exc in flush_together([projection]):
                self._fail(slot, notifications[0].id, exc, batch_end=slot.position)
                return
            self._committed(slot)
        if slot.position >= self.last:
            self.catching_up.remove(slot)
            self.running.append(slot)
            log.info("projection %s caught up at notification %d: running again", slot.name, slot.position)

    def stop(self) -> None:
        self.stopped.set()
        self.subscription.stop()
        self._thread.join(timeout=30)
        self.subscription.__exit__(None, None, None)
        self.slots[0].view.datastore.close()  # the views' one datastore
        self.app.close()

