"""The event store's pools connect with the whole conninfo, and a server that refuses writes
(SQLSTATE 25006: a standby, a demoted primary) is an unreachable store — 503, the connection
thrown away — never a 500 nor a rejected upload (DESIGN §13)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from eventsourcing import persistence as es_persistence
from eventsourcing.persistence import InfrastructureFactory

from hub.service.typedefs import SEAT
from hub.storage import persistence
from hub.storage.store import Database
from tests.conftest import Hub

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CARD = "ABCDEF01"


def _datastore(database: Database, **env: str):  # noqa: ANN202 - eventsourcing's PostgresDatastore
    factory = InfrastructureFactory.construct({**database.eventsourcing_env(), **env})
    assert isinstance(factory, persistence.Factory)
    return factory.datastore


def test_the_library_pool_is_replaced_by_one_on_the_whole_conninfo(database: Database) -> None:
    """The hook into eventsourcing 9.5: if its datastore stops building ``pool`` this way, this fails."""
    url = Database.from_url(f"{database.url} application_name=cardhub-conninfo-test")
    datastore = _datastore(url, POSTGRES_POOL_SIZE="1", POSTGRES_MAX_OVERFLOW="0")
    try:
        assert isinstance(datastore.pool, persistence.ReadWritePool)
        assert (datastore.pool.min_size, datastore.pool.max_size) == (1, 1)
        with datastore.get_connection() as conn:
            name = conn.execute("SELECT current_setting('application_name') AS name").fetchone()["name"]
            assert conn.autocommit  # the library's configure callback still runs
        assert name == "cardhub-conninfo-test"  # a parameter the library's five settings would have lost
    finally:
        datastore.close()


def test_a_connection_to_a_read_only_server_is_a_store_error_and_thrown_away(database: Database) -> None:
    datastore = _datastore(database, POSTGRES_POOL_SIZE="1", POSTGRES_MAX_OVERFLOW="0")
    try:
        with datastore.transaction(commit=True) as curs:
            curs.execute("CREATE TABLE scratch (n int)")
        with datastore.get_connection() as conn:  # the pool's one connection turns read-only
            conn.execute("SET default_transaction_read_only = on")
            read_only_pid = conn.info.backend_pid
        with pytest.raises(es_persistence.OperationalError) as caught, datastore.transaction(commit=True) as curs:
            curs.execute("INSERT INTO scratch VALUES (1)")
        assert isinstance(caught.value.__cause__, persistence.ReadOnlyServer)
        with datastore.transaction(commit=True) as curs:
            curs.execute("INSERT INTO scratch VALUES (2)")
            assert curs.connection.info.backend_pid != read_only_pid
            assert curs.execute("SELECT n FROM scratch").fetchall() == [{"n": 2}]
    finally:
        datastore.close()


async def test_the_writer_answers_503_on_a_read_only_server_and_recovers_by_itself(hub: Hub) -> None:
    await hub.merchant()
    pos = await hub.pos()
    await hub.account("s1", cash=1000, card=CARD)
    pool = hub.app[SEAT].active().application.recorder.datastore.pool
    held = [pool.getconn() for _ in range(pool.max_size)]  # every connection the writer may use
    for conn in held:
        conn.execute("SET default_transaction_read_only = on")
    for conn in held:
        pool.putconn(conn)
    pos.purchase(CARD, 300, NOON)
    # The pool may close a returned connection beyond its idle one: new sessions are read-only
    # too, as on a demoted primary, until the "promotion" below.
    dbname = hub.database.params["dbname"]
    with psycopg.connect(hub.database.url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
    statuses = []
    for attempt in range(len(held) + 2):
        if attempt == 1:
            with psycopg.connect(hub.database.url, autocommit=True, options="-c default_transaction_read_only=off") as admin:
                admin.execute(f'ALTER DATABASE "{dbname}" RESET default_transaction_read_only')
        resp = await hub.client.post(f"/v1/devices/{pos.device_id}/events", json={"events": pos.pending})
        body = await resp.json(content_type=None)
        statuses.append(resp.status)
        if resp.status == 200:
            break
        assert (resp.status, body["code"], "Retry-After" in resp.headers) == (503, "store_unavailable", True)
    assert statuses[-1] == 200 and statuses[0] == 503, statuses
    assert body["results"][0]["status"] == "accepted"  # the event was never taken for the upload's fault
    await hub.settle()
    for _ in range(len(held) + 1):  # a read of a person is recorded too: it may meet the other connection
        status, balance = await hub.request("GET", "/v1/accounts/s1/balance")
        if status != 503:
            break
    assert (status, balance["total"]) == (200, 700)
