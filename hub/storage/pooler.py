"""Refusing a pooler that shares server sessions (DESIGN §13): pgbouncer in transaction or
statement pooling mode. The writer's advisory lock, the subscription's LISTEN and the pools'
session settings each need a server session of their own for as long as the client holds it;
behind transaction pooling the lock would be taken on one server connection and the writes go
out on others.

No SQL on an ordinary connection asks pgbouncer for its pool mode, so this is seen from the
client side, with two client sessions A and B open at once:

1. A runs ``SELECT pg_backend_pid()`` on its own (autocommit) and is idle again;
2. B opens a transaction and runs it too, and keeps the transaction open;
3. A runs it once more while B's transaction holds B's server connection.

On a server, or behind session pooling, each client session is one server backend for its
life: B's pid differs from A's and A's stays the same. Behind transaction pooling A's server
connection went back to the pool after step 1, and pgbouncer hands out the connection released
last first (its default, ``server_round_robin = 0``): B gets A's backend in step 2, and in step
3 A gets another one. Either sign is enough, so there is no false alarm on a server, and a
pooler that shares sessions is caught on every try with pgbouncer's defaults (tried
``ROUNDS`` times in case another client of the pooler takes the released connection first).
Statement pooling refuses step 2's transaction outright.
"""

from __future__ import annotations

import psycopg

from hub.config import ConfigError, first_line
from hub.storage.budget import START_CHECK

ROUNDS = 3
CONNECT_TIMEOUT_S = 10
ADVICE = "use pool_mode = session"


def refuse_shared_sessions(url: str) -> None:
    """Raises ``ConfigError`` (one line) when ``url`` leads to a pooler that shares server sessions."""
    with (psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name=START_CHECK) as a,
          psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, application_name=START_CHECK) as b):
        for _ in range(ROUNDS):
            first = _pid(a)
            try:
                other = _pid(b)  # psycopg opens a transaction: B holds its server connection
                again = _pid(a)
            except psycopg.Error as exc:
                if "pooling mode" not in str(exc):  # pgbouncer: "transaction blocks not allowed in statement pooling mode"
                    raise
                raise ConfigError(
                    f"the database is reached through pgbouncer in statement pooling mode ({first_line(exc)}); "
                    f"the hub's writer lock and sessions need a server session each: {ADVICE}") from None
            finally:
                if not b.closed:
                    b.rollback()
            if other == first or again != first:
                raise ConfigError(
                    "the database is reached through pgbouncer in transaction pooling mode (or another pooler that "
                    f"shares server connections: two sessions ran on backend {first if other == first else again}); "
                    f"the hub's writer lock and sessions need a server session each: {ADVICE}")


def _pid(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])

