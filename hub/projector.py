"""Runs the projections with the eventsourcing projection runner and keeps them running."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.utils import EnvType

from domain.application import CampusCard
from projections.base import BatchingProjection, View
from projections.directory import DirectoryProjection, DirectoryView
from projections.ledger import LedgerProjection, LedgerView

log = logging.getLogger(__name__)

PROJECTIONS: tuple[tuple[type[Projection[Any]], type[View]], ...] = (
    (LedgerProjection, LedgerView),
    (DirectoryProjection, DirectoryView),
)


class Projector:
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

    def positions(self) -> dict[str, int]:
        return {
            name: runner.view.max_tracking_id(CampusCard.name) or 0
            for name, runner in self.runners.items()
        }

    def wait(self, notification_id: int | None, timeout: float = 10.0) -> None:
        """Blocks until every view has applied ``notification_id`` (tests, demo, CLI)."""
        for runner in self.runners.values():
            runner.wait(notification_id, timeout=timeout)

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
