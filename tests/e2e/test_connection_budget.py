"""The connection budget (DESIGN §13): a hub holds at most ``CARDHUB_DB_POOL`` (20) server
connections, counted from ``pg_stat_activity`` — idle, under uploads and dashboard reads, with
an ``audit verify`` (at most 4 more) running meanwhile; a connection shortage of the projections'
process shows in ``/healthz`` as ``degraded`` naming it, and clears once connections are back."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import aiohttp
import psycopg
import pytest
from psycopg import sql

from hub.storage.store import Database
from tests.e2e.campus_load import Campus, Sampler, cli, hub_sessions, serve_args, sessions
from tests.e2e.processes import free_port, ready, start
from tests.e2e.processes import run_dir  # noqa: F401 - a fixture

BUDGET = 20
VERIFY_BUDGET = 4


@pytest.fixture
def external(database: Database) -> Iterator[dict[str, str]]:
    yield {**os.environ, "CARDHUB_DATABASE_URL": database.url}


@pytest.mark.timeout(300)
async def test_the_hub_holds_at_most_20_connections_idle_under_load_and_verify_at_most_4_more(
    pg_server: Database, database: Database, external: dict[str, str], run_dir: Path,
) -> None:
    port, dbname = free_port(), database.params["dbname"]
    hub = start(serve_args(run_dir, port), run_dir / "hub.log", env=external)
    url = f"http://127.0.0.1:{port}"
    try:
        await ready(url, hub, run_dir / "hub.log")
        token = cli("token", "issue", "--role", "admin", "--data-dir", str(run_dir / "hub"), env=external)
        assert token.returncode == 0, token.stderr
        async with aiohttp.ClientSession() as session:
            campus = await Campus.seed(session, url, token.stdout.strip(), devices=20)
            await campus.current(session)
            await asyncio.sleep(1.0)  # the seeding's short-lived connections gone
            idle = sessions(pg_server, dbname)
            print(f"idle: {hub_sessions(idle)} server connections {dict(idle)}")
            assert hub_sessions(idle) <= BUDGET, idle
            assert idle[""] == 0, f"every session of the hub is named: {idle}"

            with Sampler(pg_server, dbname) as sampler:
                stop_reads = asyncio.Event()
                reads = asyncio.ensure_future(campus.dashboard_reads(session, stop_reads))
                verify = asyncio.ensure_future(asyncio.to_thread(
                    cli, "audit", "verify", "--data-dir", str(run_dir / "hub"), env=external))
                await campus.uploads(session, batches=15)
                stop_reads.set()
                done_reads, verified = await reads, await verify
                await campus.current(session)
            print(f"under load ({campus.acknowledged} events acknowledged, {done_reads} reads, a verify): "
                  f"peak {sampler.peak_hub} hub connections, {sampler.peak_verify} for the verify, "
                  f"{sampler.samples} samples, peak by name {dict(sampler.peak_by_name)}")
            # Under load too, every check holds: the books stop where the ledger's view stands.
            assert verified.returncode == 0, verified.stdout + verified.stderr
            settled = cli("audit", "verify", "--data-dir", str(run_dir / "hub"), env=external)
            assert settled.returncode == 0, settled.stdout + settled.stderr
            assert sampler.samples >= 10 and done_reads > 0
            assert sampler.peak_hub <= BUDGET, sampler.peak_by_name
            assert 1 <= sampler.peak_verify <= VERIFY_BUDGET, sampler.peak_by_name
            assert await campus.spent(session) == 100 * campus.acknowledged
    finally:
        hub.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(hub.wait, 15) == 0


@pytest.mark.parametrize("value, says", [
    ("10", "at least 11"), ("0", "between 1 and"), ("x", "not a whole number"),
    (str(2**63), "between 1 and"), ("-1", "not a whole number"),
])
def test_a_budget_too_small_or_not_a_number_is_one_line_and_nothing_starts(
    value: str, says: str, external: dict[str, str], run_dir: Path,
) -> None:
    done = cli(*serve_args(run_dir, free_port()), env={**external, "CARDHUB_DB_POOL": value})
    assert done.returncode == 2
    assert done.stderr.startswith("cardhub: CARDHUB_DB_POOL: ") and says in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (run_dir / "hub").exists() or not any((run_dir / "hub").iterdir())


@pytest.fixture
def limited(pg_server: Database, database: Database) -> Iterator[tuple[Database, str]]:
    """The test database owned by a role of its own, which the hub connects as (a role's
    CONNECTION LIMIT does not hold for a superuser)."""
    role = f"budget_{uuid4().hex[:8]}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(database.params["dbname"]), sql.Identifier(role)))
    yield Database({**database.params, "user": role}), role
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database.params["dbname"])))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.timeout(240)
async def test_projections_without_a_connection_are_degraded_in_healthz_then_catch_up(
    pg_server: Database, limited: tuple[Database, str], run_dir: Path,
) -> None:
    database, role = limited
    env = {**os.environ, "CARDHUB_DATABASE_URL": database.url}
    port = free_port()
    hub = start(serve_args(run_dir, port), run_dir / "hub.log", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        await ready(url, hub, run_dir / "hub.log")
        token = cli("token", "issue", "--role", "admin", "--data-dir", str(run_dir / "hub"), env=env)
        async with aiohttp.ClientSession() as session:
            campus = await Campus.seed(session, url, token.stdout.strip(), devices=2)
            await campus.current(session)
            with psycopg.connect(pg_server.url, autocommit=True) as admin:
                # The role may keep what it has but for the projections' sessions, and no more.
                held = admin.execute(
                    "SELECT count(*) FILTER (WHERE application_name <> 'cardhub projections') FROM pg_stat_activity"
                    " WHERE usename = %s", (role,)).fetchone()[0]
                admin.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(sql.Identifier(role), sql.Literal(held)))
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s"
                              " AND application_name = 'cardhub projections'", (role,))
                await campus.uploads(session, batches=1)  # accepted: the writer has its connections
                health = await _health_until(session, url, lambda h: h["status"] == "degraded")
                [problem] = [p for p in health["problems"] if p.get("pool") == "cardhub projections"]
                assert problem["error"].startswith("projections cannot get a database connection: "), problem
                assert "too many connections for role" in problem["error"], problem
                admin.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT -1").format(sql.Identifier(role)))
            health = await _health_until(session, url, lambda h: h["status"] == "ok")
            await campus.current(session)
            assert await campus.spent(session) == 100 * campus.acknowledged  # caught up
    finally:
        hub.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(hub.wait, 15) == 0


async def _health_until(session: aiohttp.ClientSession, url: str, done: object, timeout_s: float = 30) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        async with session.get(url + "/healthz") as resp:
            health = await resp.json()
        if resp.status == 200 and done(health):  # type: ignore[operator]
            return health
        assert asyncio.get_running_loop().time() < deadline, health
        await asyncio.sleep(0.1)
