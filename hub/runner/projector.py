"""Runs the projections, behind one subscription to the event store, in a process of their own.

The hub's process spends its one interpreter lock on HTTP, signatures and the writer; the
projections (CPU in Python too) run beside it in a child process, so both cores work. The
child watches its parent and exits with it; the parent restarts a child that died.
The runner itself is ``hub.runner.shared``, its hooks into the library ``hub.runner.hooks``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

import psycopg
from eventsourcing.utils import EnvType

from domain.application import CampusCard
from hub.config import collect_rarely, first_line
from hub.runner.shared import SharedRunner
from hub.storage import persistence, store
from hub.storage.budget import Budget
from projections.catalogue import open_views

log = logging.getLogger(__name__)


def run_projections(env: dict[str, str], views_env: dict[str, str], parent_pid: int, shortage: Any) -> None:
    """The child process: runs the projections until SIGTERM (from the parent, or the whole
    process group's) or until orphaned. A runner that stopped — a projection raised, or its
    subscription lost the server — is started again from the tracking records once the store
    answers; while it does not, the child waits, with one log line per outage, and tells the
    parent why in ``shortage`` (``Projector.shortage``: /healthz says ``degraded``). It runs at a
    lower scheduling priority than the hub (``PROJECTIONS_NICE``)."""
    os.nice(PROJECTIONS_NICE)
    collect_rarely()
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
                    runner = SharedRunner(env, views_env)
                except store.STORE_ERRORS as exc:
                    shortage.value = first_line(exc).encode("utf-8", "replace")[: len(shortage) - 1]
                    if unreachable_since is None:
                        unreachable_since = time.monotonic()
                        log.error("projections: the store is unreachable (%s); waiting for it", first_line(exc))
                else:
                    shortage.value = b""
                    runner.start()
                    if unreachable_since is not None:
                        log.warning("projections: running again after %.1f s", time.monotonic() - unreachable_since)
                        unreachable_since = None
            stop.wait(SUPERVISE_S)
    finally:
        if runner is not None:
            runner.stop()


SUPERVISE_S = 0.25
# The projections yield the CPU to the hub's process (and to PostgreSQL) when both want it: a
# till's online answer waits for the hub, a balance can follow a few tenths of a second later.
# They still get every idle cycle. Medians of three `cardhub bench --scenario lunch` runs on
# 2 cores: online p99 right after the burst 12.8 → 9.1 ms, lunch p99 23.9 → 18.7 ms, its
# worst second 46 → 26 ms; the sustained rate and the projections' lag in it (0.13–0.36 s)
# unchanged. Niceness 19 measured the same as 10.
PROJECTIONS_NICE = 10


def _probe(env: EnvType) -> None:
    """One quick connection, so that a runner is built only on a store that answers."""
    with psycopg.connect(env[persistence.CONNINFO], connect_timeout=2,
                         application_name=env.get(persistence.APPLICATION_NAME) or "cardhub") as conn:
        conn.execute("SELECT 1")



class Projector:
    """The parent's handle on the projections' process, and a way to wait for their positions.

    The child is stopped with SIGTERM, never through a shared lock or event: when the whole
    process group is signalled the child may already be gone, and a multiprocessing Event's
    ``set()`` then blocked the hub's shutdown for good."""

    STOP_TIMEOUT_S = 5.0
    SHORTAGE_BYTES = 300

    def __init__(self, env: EnvType, budget: Budget) -> None:
        self.env = dict(env)
        self.budget = budget
        self._context = multiprocessing.get_context("spawn")
        self._stopping = False
        self._process: Any = None
        # Written by the child, read here: a lock-free array (no lock the child could die holding).
        self._shortage = self._context.RawArray("c", self.SHORTAGE_BYTES)
        # Creating the views here, before the child starts, creates their tables once.
        self.views = open_views({**os.environ, **self.env, **budget.view_waits_env()})

    def shortage(self) -> str | None:
        """Why the projections' process cannot get a database connection now, or None."""
        text = self._shortage.value.decode("utf-8", "replace")
        return f"projections cannot get a database connection: {text}" if text else None

    def start(self) -> None:
        self._shortage.value = b""
        self._process = self._context.Process(
            target=run_projections,
            args=({**self.env, **self.budget.projection_events_env()}, {**self.env, **self.budget.projection_views_env()},
                  os.getpid(), self._shortage),
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
        next(iter(self.views.values())).datastore.close()  # the views' one datastore
