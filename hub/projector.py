"""Runs the projections, behind one subscription to the event store, in a process of their own.

The hub's process spends its one interpreter lock on HTTP, signatures and the writer; the
projections (CPU in Python too) run beside it in a child process, so both cores work. The
child watches its parent and exits with it; the parent restarts a child that died.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.projection import ApplicationSubscription, Projection
from eventsourcing.utils import Environment, EnvType

from domain.application import CampusCard
from hub import store
from projections.access import AccessProjection, AccessView
from projections.audit import AuditProjection, AuditView
from projections.base import BatchingProjection, View, flush_together
from projections.directory import DirectoryProjection, DirectoryView
from projections.ledger import LedgerProjection, LedgerView
from projections.stats import StatsProjection, StatsView

log = logging.getLogger(__name__)

PROJECTIONS: tuple[tuple[type[BatchingProjection[Any]], type[View]], ...] = (
    (LedgerProjection, LedgerView),
    (DirectoryProjection, DirectoryView),
    (AccessProjection, AccessView),
    (AuditProjection, AuditView),
    (StatsProjection, StatsView),
)


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
    5 s behind.) If a projection raises, the runner stops and its error is kept; the
    supervisor starts a new runner."""

    MAX_BATCH = 1000
    MAX_DELAY_S = 0.1
    LINGER_S = 0.02
    PULL_DELAY_S = 0.005

    def __init__(self, env: EnvType) -> None:
        self.env = dict(env)
        self.projections: list[tuple[BatchingProjection[Any], int]] = []
        for projection_class, view_class in PROJECTIONS:
            view = _view(projection_class, view_class, self.env)
            projection = projection_class(view, self.env)
            self.projections.append((projection, view.max_tracking_id(CampusCard.name) or 0))
        self.app = CampusCard(env=self.env)
        start = min(position for _, position in self.projections)
        self.subscription: ApplicationSubscription[Any] = ApplicationSubscription(self.app, gt=start)
        self.has_more = _fetched_but_unprocessed(self.subscription)
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
            mapper, name = self.app.mapper, self.app.name
            for notification in self.subscription.subscription:
                tracking = Tracking(name, notification.id)
                domain_event = mapper.to_domain_event(notification)
                for projection, position in self.projections:
                    if notification.id > position:
                        projection.process_stored(notification, domain_event, tracking)
                if staged == 0:
                    due = time.monotonic() + self.MAX_DELAY_S
                staged += 1
                if staged >= self.MAX_BATCH or not self._more_soon(due):
                    self._flush()
                    staged = 0
        except BaseException as exc:  # noqa: BLE001 - kept for the supervisor, which logs it
            self.error = exc
        finally:
            self.stopped.set()

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
        flush_together([projection for projection, _ in self.projections])

    def stop(self) -> None:
        self.stopped.set()
        self.subscription.stop()
        self._thread.join(timeout=30)
        self.subscription.__exit__(None, None, None)
        for projection, _ in self.projections:
            projection.view.datastore.close()
        self.app.close()


# A view is written by one thread and waited on by another: it needs few connections (the
# library's default pool opens five per view, and there is a view per projection in each process).
VIEW_POOL = {"POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "2"}


def _view(projection_class: type[Projection[Any]], view_class: type[View], env: EnvType) -> View:
    return InfrastructureFactory.construct(
        Environment(projection_class.name, {**os.environ, **env, **VIEW_POOL})
    ).tracking_recorder(view_class)


def _fetched_but_unprocessed(subscription: ApplicationSubscription[Any]) -> Callable[[], bool]:
    """Whether the subscription holds events it has fetched and not yet handed on.

    Reads the library's subscription buffers (eventsourcing 9.5: ``ListenNotifySubscription``);
    if they are not there, every event is written on its own, which is correct, only slower."""
    inner = subscription.subscription
    if not all(hasattr(inner, a) for a in ("_notifications", "_notifications_index", "_notifications_queue")):
        log.warning("projection batching disabled: unknown subscription type %r", type(inner))
        return lambda: False

    def has_more() -> bool:
        return (
            inner._notifications_index < len(inner._notifications)
            or inner._notifications_queue.qsize() > 0
        )

    return has_more


class _CoalescingEvent(threading.Event):
    """The subscription's "notified" flag, which lets a few more commits arrive before the
    pull: under a trickle of single swipes the library reads the store once per NOTIFY,
    a query for every two or three events."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def wait(self, timeout: float | None = None) -> bool:
        woke = super().wait(timeout)
        if woke:
            time.sleep(self.delay_s)
        return woke


def _coalesce_pulls(subscription: ApplicationSubscription[Any], delay_s: float) -> None:
    """Gives the library's pull thread a coalescing flag (eventsourcing 9.5's
    ``ListenNotifySubscription._has_been_notified``); if it is not there, pulls stay as they are."""
    inner = subscription.subscription
    old = getattr(inner, "_has_been_notified", None)
    if not isinstance(old, threading.Event):
        log.warning("pull coalescing disabled: unknown subscription type %r", type(inner))
        return
    inner._has_been_notified = _CoalescingEvent(delay_s)
    old.set()  # the pull thread may be waiting on the old flag: wake it to take the new one


def run_projections(env: dict[str, str], parent_pid: int) -> None:
    """The child process: runs the projections until SIGTERM (from the parent, or the whole
    process group's) or until orphaned. A runner that stopped — a projection raised, or its
    subscription lost the server — is started again from the tracking records once the store
    answers; while it does not, the child waits, with one log line per outage."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store.fast_reconnects()
    runner: SharedRunner | None = None
    unreachable_since: float | None = None
    try:
        while not stop.is_set() and os.getppid() == parent_pid:
            if runner is not None and runner.stopped.is_set():
                log.error("projections stopped (%r); starting again from their tracking records", runner.error)
                runner.stop()
                runner = None
            if runner is None:
                try:
                    _probe(env)
                    runner = SharedRunner(env)
                except store.STORE_ERRORS as exc:
                    if unreachable_since is None:
                        unreachable_since = time.monotonic()
                        log.error("projections: the store is unreachable (%s); waiting for it", _first_line(exc))
                else:
                    runner.start()
                    if unreachable_since is not None:
                        log.warning("projections: running again after %.1f s", time.monotonic() - unreachable_since)
                        unreachable_since = None
            stop.wait(SUPERVISE_S)
    finally:
        if runner is not None:
            runner.stop()


SUPERVISE_S = 0.25


def _probe(env: EnvType) -> None:
    """One quick connection, so that a runner is built only on a store that answers."""
    params = {k: env[f"POSTGRES_{k.upper()}"] for k in ("dbname", "host", "port", "user", "password") if env.get(f"POSTGRES_{k.upper()}")}
    with psycopg.connect(**params, connect_timeout=2) as conn:
        conn.execute("SELECT 1")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Projector:
    """The parent's handle on the projections' process, and a way to wait for their positions.

    The child is stopped with SIGTERM, never through a shared lock or event: when the whole
    process group is signalled the child may already be gone, and a multiprocessing Event's
    ``set()`` then blocked the hub's shutdown for good."""

    STOP_TIMEOUT_S = 5.0

    def __init__(self, env: EnvType) -> None:
        self.env = dict(env)
        self._context = multiprocessing.get_context("spawn")
        self._stopping = False
        self._process: Any = None
        # Creating the views here, before the child starts, creates their tables once.
        self.views = {
            projection_class.name: _view(projection_class, view_class, self.env)
            for projection_class, view_class in PROJECTIONS
        }

    def start(self) -> None:
        self._process = self._context.Process(
            target=run_projections, args=(self.env, os.getpid()),
            name="cardhub-projections", daemon=False,
        )
        self._process.start()

    def restart_if_dead(self) -> bool:
        if self._process is not None and not self._process.is_alive() and not self._stopping:
            log.error("the projections' process exited (%s); starting it again", self._process.exitcode)
            self._process.join()
            self.start()
            return True
        return False

    def wait(self, notification_id: int | None, timeout: float = 10.0) -> None:
        """Blocks until every view has applied ``notification_id`` (tests, demo, CLI)."""
        deadline = time.monotonic() + timeout
        for view in self.views.values():
            view.wait(CampusCard.name, notification_id, timeout=max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        self._stopping = True
        if self._process is not None:
            self._process.terminate()  # SIGTERM: the child stops its runner and exits
            self._process.join(timeout=self.STOP_TIMEOUT_S)
            if self._process.is_alive():
                log.error("the projections' process did not stop in %.0f s; killing it", self.STOP_TIMEOUT_S)
                self._process.kill()
                self._process.join()
        for view in self.views.values():
            view.datastore.close()
