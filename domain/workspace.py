"""The workspace of a command or a batch of swipes: the aggregates it touches, each loaded once
and saved together (``CampusCard.workspace_class``; the writer's saves in chunks)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate


class Workspace:
    """The aggregates one command or batch touches: each loaded once, saved together."""

    def __init__(self, app: Application) -> None:
        self.app = app
        self.loaded: dict[UUID, Aggregate] = {}
        self.pending = 0

    def changed(self, events: int = 1) -> None:
        """Counts new events (``events`` may be an upper bound); a subclass may save in chunks."""
        self.pending += events

    def add(self, aggregate: Aggregate) -> Any:
        """A new aggregate, saved with the rest."""
        self.loaded[aggregate.id] = aggregate
        return aggregate

    def find(self, aggregate_id: UUID) -> Any | None:
        if aggregate_id not in self.loaded:
            try:
                self.loaded[aggregate_id] = self.app.repository.get(aggregate_id)
            except AggregateNotFoundError:
                return None
        return self.loaded[aggregate_id]

    def save(self) -> None:
        """Saves every pending event."""
        changed = [a for a in self.loaded.values() if a.pending_events]
        if changed:
            self.app.save(*changed)
        self.pending = 0

    def discard(self) -> None:
        """The command failed: what it changed goes with this workspace, never stored. (The
        library's repository hands out copies of what it caches; a subclass whose cache hands
        out its very objects drops them from the cache here.)"""
