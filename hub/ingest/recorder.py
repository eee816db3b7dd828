"""The writer's event recorder: the library's PostgreSQL application recorder (same table,
same notification ids, same LOCK TABLE … EXCLUSIVE that keeps ids in commit order, same
NOTIFY), inserting a whole batch in one round trip to the server.

The library's own path sends BEGIN, the lock, the insert and COMMIT as separate messages
and dumps each event as a composite value in Python. On a loaded two-core machine every
round trip waits for the server's backend and then for this thread's interpreter lock; under
single-event traffic those waits were most of a batch's time. Here one prepared call of a
plpgsql function, in autocommit, is one implicit transaction: lock, notify, insert four
typed arrays, return the ids. (This is not the library's POSTGRES_ENABLE_DB_FUNCTIONS path,
which is left off: its function omits the table lock, and that setting also changes how
tracking records are written.)

The data keys of accounts (``hub.ingest.keystore``) are written by the same statement: when
the command whose events these are made or destroyed a key, the call is preceded by the
key's data-modifying ``WITH``. (Measured, one event: 0.48–0.54 ms alone, 0.57–0.64 ms with
its key in one statement; an explicit transaction around the two took 0.3–0.5 ms more.)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.sql import SQL, Identifier, Literal

from hub.ingest import keystore

TOPIC = "hub.ingest.recorder:ArrayInsertRecorder"
F = TypeVar("F", bound=Callable[..., Any])

# The library retries every store call ten times, 0.2 s apart, each waiting up to the pool's
# timeout for a connection: with the server down an upload hung for 71 s. Here a call is tried
# again only when it failed at once — a connection the server closed when it restarted, one
# per pooled connection — and a store that stays away fails the call within about a second.
ATTEMPTS = 3
STALE_FAILURE_S = 0.3
RETRY_WAIT_S = 0.05


def retry_stale(fn: F) -> F:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, ATTEMPTS + 1):
            started = time.monotonic()
            try:
                return fn(*args, **kwargs)
            except (InterfaceError, OperationalError):
                if attempt == ATTEMPTS or time.monotonic() - started > STALE_FAILURE_S:
                    raise
            time.sleep(RETRY_WAIT_S)
        raise AssertionError("unreachable")

    return call  # type: ignore[return-value]


def bound_retries(recorder: Any) -> None:
    """Replaces the library's retries of a recorder's reads with ``retry_stale`` (the library's
    ``@retry`` keeps the undecorated method in ``__wrapped__``; tests/e2e/test_faults.py checks it)."""
    for name in ("select_events", "select_notifications", "max_notification_id"):
        method = getattr(type(recorder), name, None)
        if method is not None and hasattr(method, "__wrapped__"):
            setattr(recorder, name, retry_stale(method.__wrapped__).__get__(recorder))


class ArrayInsertRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        # Why this hub may not write now (it lost the database's writer lock); None: it may.
        self.fenced: str | None = None
        self.keys = keystore.AccountKeys()  # the key changes of the command being saved
        bound_retries(self)
        schema = Identifier(datastore.schema)
        function = SQL("{}.{}").format(schema, Identifier(f"{events_table_name}_insert_batch"))
        self.sql_create_statements.append(SQL(
            "CREATE OR REPLACE FUNCTION {function}(ids uuid[], versions bigint[], topics text[], states bytea[])"
            " RETURNS SETOF bigint LANGUAGE plpgsql AS $body$"
            " BEGIN"
            "  PERFORM set_config('lock_timeout', {lock_timeout}, true);"
            "  LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;"
            "  NOTIFY {channel};"
            "  RETURN QUERY INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)"
            "   SELECT * FROM unnest(ids, versions, topics, states) RETURNING notification_id;"
            " END $body$"
        ).format(
            function=function, schema=schema, table=Identifier(events_table_name),
            lock_timeout=Literal(f"{int(datastore.lock_timeout)}s"), channel=Identifier(self.channel_name),
        ))
        # Vacuum and analyze take SHARE UPDATE EXCLUSIVE, which conflicts with the insert lock:
        # measured, autovacuum on this insert-only table blocked the writer for one second
        # (until deadlock_timeout cancelled it) every minute, and never finished. The table
        # has no updates or deletes; see the README (Operations) for freezing it off-peak.
        self.sql_create_statements.append(SQL(
            "ALTER TABLE {}.{} SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)"
        ).format(schema, Identifier(events_table_name)))
        self.sql_create_statements.extend(keystore.create_statements(schema))
        # %b: arrays go in binary, a fraction of text's dumping cost (bytea 0.18 vs 9.6 µs a value).
        self._call = SQL("SELECT * FROM {}(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) AS t(id)").format(function)
        self._call_with_keys = keystore.with_changes(schema) + self._call

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        keys = self.keys.take()
        if self.fenced is not None:
            raise OperationalError(self.fenced)
        return self._insert_batch(stored_events, keys, **kwargs)

    @retry_stale
    def _insert_batch(
        self, stored_events: Sequence[StoredEvent], keys: list[keystore.KeyChange], **kwargs: Any,
    ) -> Sequence[int] | None:
        if not stored_events or self.datastore.enable_db_functions or self.datastore.originator_id_type != "uuid":
            assert not keys, "data keys are written only with the array insert"
            return super().insert_events(stored_events, **kwargs)
        events = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            assert conn.autocommit  # the statement is its own transaction
            if keys:
                curs.execute(self._call_with_keys, (*keystore.parameters(keys), *events), prepare=True)
            else:
                curs.execute(self._call, events, prepare=True)
            return [row["id"] for row in curs.fetchall()]
