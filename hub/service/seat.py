"""Whether this hub writes (DESIGN §13). The active hub holds the database's writer lock and
writes through its Application, its writer thread and its projections' process; a standby holds
none of them and answers what needs them ``503 standby``, until its election takes the lock and
it builds them from the store (no cache of its own survives from before)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from eventsourcing.persistence import Mapper

from hub.ingest.application import IngestCampusCard
from hub.ingest.writer import IngestWriter
from hub.runner.projector import Projector


class Standby(Exception):
    """This hub is a standby: another hub writes to the database (answered 503 + Retry-After)."""


@dataclass(frozen=True, slots=True)
class Active:
    """What the active hub writes with."""

    application: IngestCampusCard
    writer: IngestWriter
    projector: Projector


class Seat:
    """The hub's role, changed once at most: standby → active. A hub that loses its seat stops
    (``hub.service.app``), so the way back to standby is a restart, with nothing cached."""

    def __init__(self) -> None:
        self._active: Active | None = None
        self.decoder: Mapper | None = None  # a standby's way to decode stored events (/healthz's lags)
        self.holder = ""  # who writes while this hub stands by
        self.stopped_because: str | None = None  # why the hub stopped itself; ``cardhub serve`` exits 2

    @property
    def role(self) -> str:
        return "standby" if self._active is None else "active"

    @property
    def standby(self) -> bool:
        return self._active is None

    def active(self) -> Active:
        """What this hub writes with, or ``Standby``."""
        if self._active is None:
            raise Standby(self.holder)
        return self._active

    def take(self, active: Active) -> None:
        assert self._active is None, "a hub takes its seat once"
        self._active, self.decoder = active, None

    def leave(self) -> Active | None:
        """Gives up what the hub writes with (its stop), for the caller to close."""
        active, self._active = self._active, None
        return active

    def stop_because(self, reason: str) -> None:
        """Stops the hub the way SIGTERM does (the writer drains), to exit with status 2 and ``reason``."""
        self.stopped_because = reason
        os.kill(os.getpid(), signal.SIGTERM)

    @property
    def mapper(self) -> Mapper:
        """The stored events' mapper: the Application's, or a standby's decoder's."""
        if self._active is not None:
            return self._active.application.mapper
        assert self.decoder is not None, "a standby has a decoder"
        return self.decoder
