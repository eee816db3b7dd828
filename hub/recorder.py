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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier, Literal

TOPIC = "hub.recorder:ArrayInsertRecorder"


class ArrayInsertRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
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
        # %b: arrays go in binary, a fraction of text's dumping cost (bytea 0.18 vs 9.6 µs a value).
        self._call = SQL("SELECT * FROM {}(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) AS t(id)").format(function)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if not stored_events or self.datastore.enable_db_functions or self.datastore.originator_id_type != "uuid":
            return super().insert_events(stored_events, **kwargs)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            assert conn.autocommit  # the call is its own transaction
            curs.execute(self._call, (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ), prepare=True)
            return [row["id"] for row in curs.fetchall()]
