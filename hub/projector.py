"""Runs the projections with the eventsourcing projection runner, in a process of their own.

The hub's process spends its one interpreter lock on HTTP, signatures and the writer; the
projections (CPU in Python too) run beside it in a child process, so both cores work. The
child watches its parent and exits with it; the parent restarts a child that died.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event as EventType
from typing import Any

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.utils import Environment, EnvType

from domain.application import CampusCard
from projections.base import BatchingProjection, View
from projections.directory import DirectoryProjection, DirectoryView
from projections.ledger import LedgerProjection, LedgerView

log = logging.getLogger(__name__)

PROJECTIONS: tuple[tuple[type[Projection[Any]], type[View]], ...] = (
    (LedgerProjection, LedgerView),
    (DirectoryProjection, DirectoryView),
)


class ProjectionRunners:
    """One runner (subscription thread + view) per projection. A runner that fails is
    logged and started again; it resumes from its tracking record, so nothing is applied
    twice."""

    def __init__(self, env: EnvType) -> None:
        self.env = dict(env)
        self.runners: dict[str, ProjectionRunner[CampusCard, View]] = {}

    def start(self) -> None:
        for projection_class, view_class in PROJECTIONS:
            self._start(projection_class, view_class)

    def _start(self, projection_class: type[Projection[Any]], view_class: type[View]) -> None:
        runner: ProjectionRunner[CampusCard, View] = ProjectionRunner(
            application_class=CampusCard, projection_class=projection_class,
            view_class=view_class, env=self.env,
        )
        runner.__enter__()
        if isinstance(runner.projection, BatchingProjection):
            runner.projection.has_more = _fetched_but_unprocessed(runner)
        self.runners[projection_class.name] = runner

    def restart_failed(self) -> list[str]:
        """Restarts runners whose thread died; returns their names."""
        restarted = []
        for projection_class, view_class in PROJECTIONS:
            runner = self.runners[projection_class.name]
            if not runner.is_interrupted.is_set():
                continue
            try:
                runner.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - the runner's own error, re-raised on exit: log it
                log.exception("projection %s failed; restarting it", projection_class.name)
            self._start(projection_class, view_class)
            restarted.append(projection_class.name)
        return restarted

    def stop(self) -> None:
        for name, runner in self.runners.items():
            try:
                runner.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - report and go on stopping the others
                log.exception("projection %s stopped with an error", name)
        self.runners.clear()


def _fetched_but_unprocessed(runner: ProjectionRunner[CampusCard, View]) -> Callable[[], bool]:
    """Whether the runner's subscription holds events it has fetched and not yet handed on.

    Reads the library's subscription buffers (eventsourcing 9.5: ``ListenNotifySubscription``);
    if they are not there, every event is written on its own, which is correct, only slower."""
    subscription = getattr(getattr(runner, "_subscription", None), "subscription", None)
    if not all(hasattr(subscription, a) for a in ("_notifications", "_notifications_index", "_notifications_queue")):
        log.warning("projection batching disabled: unknown subscription type %r", type(subscription))
        return lambda: False

    def has_more() -> bool:
        return (
            subscription._notifications_index < len(subscription._notifications)  # noqa: SLF001
            or subscription._notifications_queue.qsize() > 0  # noqa: SLF001
        )

    return has_more


def run_projections(env: dict[str, str], stop: EventType, parent_pid: int) -> None:
    """The child process: runs every projection until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runners = ProjectionRunners(env)
    runners.start()
    try:
        while not stop.wait(SUPERVISE_S) and os.getppid() == parent_pid:
            for name in runners.restart_failed():
                log.error("projection %s had stopped; restarted from its tracking record", name)
    finally:
        runners.stop()


SUPERVISE_S = 0.5


class Projector:
    """The parent's handle on the projections' process, and a way to wait for their positions."""

    def __init__(self, env: EnvType) -> None:
        self.env = dict(env)
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._process: Any = None
        # Creating the views here, before the child starts, creates their tables once.
        self.views = {
            projection_class.name: InfrastructureFactory.construct(
                Environment(projection_class.name, {**os.environ, **self.env})
            ).tracking_recorder(view_class)
            for projection_class, view_class in PROJECTIONS
        }

    def start(self) -> None:
        self._process = self._context.Process(
            target=run_projections, args=(self.env, self._stop, os.getpid()),
            name="cardhub-projections", daemon=False,
        )
        self._process.start()

    def restart_if_dead(self) -> bool:
        if self._process is not None and not self._process.is_alive() and not self._stop.is_set():
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
        self._stop.set()
        if self._process is not None:
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join()
        for view in self.views.values():
            view.datastore.close()
