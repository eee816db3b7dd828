"""Where a projection that failed is recorded, for the hub's ``/healthz`` and ``/metrics``.

The projections run in a process of their own (``hub.runner.projector``); the hub's HTTP process
reads this table, beside the views and their tracking records, in the same database: it
survives a restart of either process, and a read of it is one query that also tells whether
the database is reachable. A row's ``position``/``error`` are set while the projection is
failing (the notification id it failed on, the error's one line) and cleared once it has
applied that notification; ``failures`` counts every failure ever recorded.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Composed, Identifier

from projections.queries import Connection

TABLE = "projection_failures"
ERROR_MAX_CHARS = 500


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, bounded: what ``/healthz`` shows."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text[:ERROR_MAX_CHARS]


class FailureLog:
    """The runner's writes of ``projection_failures``, each in a transaction of its own."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore

    def _sql(self, text: str) -> Composed:
        return SQL(text).format(table=Identifier(self.datastore.schema, TABLE))

    def create(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._sql(
                "CREATE TABLE IF NOT EXISTS {table} (projection text PRIMARY KEY, position bigint, error text,"
                " failures bigint NOT NULL DEFAULT 0, failed_at timestamptz)"
            ))

    def record(self, projection: str, position: int, error: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._sql(
                "INSERT INTO {table} AS f (projection, position, error, failures, failed_at)"
                " VALUES (%(projection)s, %(position)s, %(error)s, 1, now()) ON CONFLICT (projection) DO UPDATE"
                " SET position = excluded.position, error = excluded.error, failures = f.failures + 1,"
                " failed_at = excluded.failed_at"
            ), {"projection": projection, "position": position, "error": error})

    def clear(self, projection: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._sql("UPDATE {table} SET position = NULL, error = NULL WHERE projection = %s"),
                         (projection,))

    def failing(self) -> dict[str, int]:
        """Each projection recorded as failing, and the notification id it failed on."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._sql("SELECT projection, position FROM {table} WHERE position IS NOT NULL"))
            rows: list[Any] = curs.fetchall()
        return {row["projection"]: int(row["position"]) for row in rows}


async def recorded(conn: Connection, timeout: float) -> list[Any]:
    """Every projection's row (``projection``, ``position``, ``error``, ``failures``,
    ``failed_at``), by name: the hub's read (in the default schema, like the views it reads).
    Raises the driver's error for a missing table before the projections' process made it."""
    return await conn.fetch(f"SELECT projection, position, error, failures, failed_at FROM {TABLE}"  # noqa: S608
                            " ORDER BY projection", timeout=timeout)
