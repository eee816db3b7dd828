"""The connection budget (DESIGN §13): every PostgreSQL server connection a hub may hold, pool
by pool, and the name each pool's sessions carry in ``pg_stat_activity``.

A hub holds at most ``CARDHUB_DB_POOL`` (default 20) server connections, its projections'
process included, so two hubs and an ``audit verify`` fit PostgreSQL's default
``max_connections = 100``. Behind pgbouncer, whose session pooling frees a server connection
only when its client leaves, ``default_pool_size`` needs 24 for a hub and a verify (its
default of 20 would keep a verify waiting), and 20 more for a standby (deploy/README.md).
The rule, the only place the sizes are decided:

| pool | connections | why |
| --- | --- | --- |
| writer lock | 1 | the advisory lock's own session, for the hub's life |
| writer | 2 | the writer thread's batches (events and snapshots); one more while a broken one is replaced |
| view waits | 1 | the hub's handle on the views: tables at start, ``Projector.wait`` |
| projections | 4 | the projections' process: the views' writes (1), the subscription's LISTEN (1), its pulls and a projection's catch-up (2) |
| reads | the rest (12 by default) | the asyncpg pool of the API, ``/healthz``, checkpoints, token revocations, subsidy expiry |

``audit verify`` holds at most ``VERIFY_CONNECTIONS`` of its own: its snapshot, the replay's
scratch schema, the replayed views and the Application that only decodes (it never connects).
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.config import ConfigError
from hub.storage import persistence

READS_MIN = 3  # /healthz must find a connection beside a checkpoint and the token refresh
VERIFY_CONNECTIONS = 4

# application_name of each pool's sessions (the writer lock's names its hub: hub.storage.writer_lock).
WRITER = "cardhub writer"
READS = "cardhub reads"
VIEW_WAITS = "cardhub view waits"
PROJECTIONS = "cardhub projections"
VERIFY = "cardhub audit verify"
TOKEN_OFFICE = "cardhub token office"
START_CHECK = "cardhub start check"
# The eventsourcing setting our factory reads to name a datastore's sessions.
APPLICATION_NAME = persistence.APPLICATION_NAME


@dataclass(frozen=True, slots=True)
class Budget:
    """How ``total`` server connections are split among a hub's pools (the table above)."""

    total: int
    lock: int = 1
    writer: int = 2
    view_waits: int = 1
    projection_views: int = 1
    projection_events: int = 3

    @classmethod
    def of(cls, total: int) -> Budget:
        budget = cls(total)
        if budget.reads < READS_MIN:
            raise ConfigError(f"CARDHUB_DB_POOL: {total} connections are too few to run a hub: "
                              f"at least {budget.fixed + READS_MIN}")
        return budget

    @property
    def fixed(self) -> int:
        return self.lock + self.writer + self.view_waits + self.projection_views + self.projection_events

    @property
    def reads(self) -> int:
        return self.total - self.fixed

    def writer_env(self) -> dict[str, str]:
        return pool_env(WRITER, self.writer)

    def view_waits_env(self) -> dict[str, str]:
        return pool_env(VIEW_WAITS, self.view_waits)

    def projection_events_env(self) -> dict[str, str]:
        """The projections' process's Application: the subscription, its pulls, catch-ups."""
        return pool_env(PROJECTIONS, self.projection_events)

    def projection_views_env(self) -> dict[str, str]:
        """The projections' process's views, which share one datastore."""
        return pool_env(PROJECTIONS, self.projection_views)


def pool_env(name: str, size: int, *, idle: int = 1) -> dict[str, str]:
    """eventsourcing settings for a datastore of at most ``size`` connections, ``idle`` of them
    kept open, whose sessions are named ``name``."""
    return {"POSTGRES_POOL_SIZE": str(min(idle, size)), "POSTGRES_MAX_OVERFLOW": str(size - min(idle, size)),
            APPLICATION_NAME: name, "PERSISTENCE_MODULE": persistence.TOPIC}
