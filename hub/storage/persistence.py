"""The eventsourcing library's PostgreSQL persistence, connecting with cardhub's whole conninfo.

The library builds its psycopg pool from five settings (``POSTGRES_HOST``, ``_PORT``,
``_DBNAME``, ``_USER``, ``_PASSWORD``): ``target_session_attrs``, ``sslmode`` and the rest of
``CARDHUB_DATABASE_URL`` would be lost, and with them the failover to a promoted standby. This
factory gives the pool the conninfo of ``CONNINFO`` whole, and a pool that throws away a
connection whose server refuses writes (SQLSTATE 25006: a standby, or a demoted primary) so the
next batch connects afresh and finds the primary. Reaches into eventsourcing 9.5's
``PostgresDatastore.pool`` (pinned ``<9.6``; tests/integration/test_persistence.py fails if it moves).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg.errors
from eventsourcing import postgres
from eventsourcing.utils import Environment, EnvType
from psycopg.rows import dict_row

# The settings key that carries the libpq conninfo (hub.storage.store.Database.eventsourcing_env).
CONNINFO = "CARDHUB_CONNINFO"
APPLICATION_NAME = "POSTGRES_APPLICATION_NAME"
TOPIC = f"{__name__}:Factory"


class ReadOnlyServer(psycopg.OperationalError):
    """The server refused a write (SQLSTATE 25006): it is not, or no longer, the primary.
    An ``OperationalError``, so every layer treats it as an unreachable store: ``503``, retry."""


class ReadWritePool(postgres.ConnectionPool[Any]):
    """The library's pool, but a connection that met a read-only server is closed, not reused."""

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Any]:
        with super().connection(timeout) as conn:
            try:
                yield conn
            except psycopg.errors.ReadOnlySqlTransaction as exc:
                conn.close()  # the pool discards a closed connection when it comes back
                raise ReadOnlyServer(f"the server is read-only, not the primary: {exc}") from exc


class Factory(postgres.PostgresFactory):
    """``PERSISTENCE_MODULE`` = ``TOPIC``: the library's factory with ``ReadWritePool`` on ``CONNINFO``."""

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        conninfo = self.env.get(CONNINFO)
        if not conninfo:
            raise OSError(f"eventsourcing setting {CONNINFO!r} is missing: the libpq conninfo of the event store")
        kwargs: dict[str, Any] = {"row_factory": dict_row}
        if name := self.env.get(APPLICATION_NAME):  # each pool's sessions named in pg_stat_activity (hub.storage.budget)
            kwargs["application_name"] = name
        datastore, old = self.datastore, self.datastore.pool
        datastore.pool = ReadWritePool(
            conninfo,
            connection_class=old.connection_class,
            kwargs=kwargs,
            min_size=old.min_size, max_size=old.max_size, open=False,
            configure=datastore.after_connect_func(),
            check=postgres.ConnectionPool.check_connection if datastore.pre_ping else None,
            timeout=old.timeout, max_waiting=old.max_waiting, max_lifetime=old.max_lifetime,
        )
