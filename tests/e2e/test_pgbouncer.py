"""The hub behind a real pgbouncer (DESIGN §13): in session pooling mode ``cardhub serve`` runs,
takes uploads, is healthy and ``cardhub audit verify`` passes through it; in transaction and
statement pooling mode ``cardhub serve`` refuses to start with one line naming the mode
(hub.storage.pooler), before anything is written to the database."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import psycopg
import pytest

from hub.storage.store import Database
from tests.e2e.campus_load import Campus, cli, serve_args, sessions
from tests.e2e.processes import free_port, ready, start
from tests.e2e.processes import run_dir  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(120)
# A hub holds up to 20 server connections (CARDHUB_DB_POOL) and an audit verify beside it 4 more:
# pgbouncer's own default_pool_size (20) would leave the verify waiting for a server connection.
SESSION_POOL_SIZE = 30
READY_TIMEOUT_S = 10
REFUSED_WITHIN_S = 10


@pytest.fixture
def bouncer_binary() -> str:
    path = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")  # Debian's, off a user's PATH
    if path is None:
        reason = "the pgbouncer test needs the Debian package pgbouncer (apt-get install pgbouncer)"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: not skipping)")
        pytest.skip(reason)
    return path


@contextmanager
def pgbouncer(binary: str, server: Database, pool_mode: str, run_dir: Path) -> Iterator[Database]:
    """A pgbouncer on a free port of 127.0.0.1 in front of ``server``'s database, trusting its
    clients; the same database as reached through it."""
    params, port = server.params, free_port()
    user = params.get("user", "postgres")
    target = " ".join(f"{key}={params[key]}" for key in ("host", "port", "dbname", "user", "password") if key in params)
    directory = run_dir / "pgbouncer"
    directory.mkdir(mode=0o755)
    (directory / "users.txt").write_text(f'"{user}" ""\n')
    (directory / "pgbouncer.ini").write_text("\n".join([
        "[databases]",
        f"{params['dbname']} = {target}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {directory / 'users.txt'}",
        f"pool_mode = {pool_mode}",
        "; a hub needs up to 20 server connections (CARDHUB_DB_POOL), audit verify 4 more",
        f"default_pool_size = {SESSION_POOL_SIZE}",
        "max_client_conn = 200",
        "",
    ]))
    for path in directory.iterdir():
        path.chmod(0o644)
    log_path = directory / "pgbouncer.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen([binary, *_as_user(params), str(directory / "pgbouncer.ini")],
                                stdout=log, stderr=log, start_new_session=True)
    through = Database({"host": "127.0.0.1", "port": str(port), "dbname": params["dbname"], "user": user})
    try:
        _wait_until_it_answers(through, proc, log_path)
        yield through
    finally:
        proc.terminate()
        proc.wait(10)


def _as_user(params: dict[str, str]) -> list[str]:
    """pgbouncer refuses to run as root: then it runs as the owner of the server's socket
    directory (the embedded server's user, who alone may enter it), or as nobody over TCP."""
    if os.geteuid() != 0:
        return []
    host = Path(params.get("host", ""))
    owner = host.stat().st_uid if host.is_absolute() and host.is_dir() else 0
    return ["-u", pwd.getpwuid(owner).pw_name if owner != 0 else "nobody"]


def _wait_until_it_answers(through: Database, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        assert proc.poll() is None, log_path.read_text()
        try:
            with psycopg.connect(through.url, connect_timeout=1):
                return
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)


async def test_behind_session_pooling_the_hub_serves_uploads_and_audit_verify_passes(
    bouncer_binary: str, pg_server: Database, database: Database, run_dir: Path,
) -> None:
    began = time.monotonic()
    with pgbouncer(bouncer_binary, database, "session", run_dir) as through:
        env = {**os.environ, "CARDHUB_DATABASE_URL": through.url}
        port = free_port()
        url, log_path = f"http://127.0.0.1:{port}", run_dir / "hub.log"
        hub = start(serve_args(run_dir, port), log_path, env=env)
        try:
            await ready(url, hub, log_path)
            started = time.monotonic()
            token = cli("token", "issue", "--role", "admin", "--data-dir", str(run_dir / "hub"), env=env)
            assert token.returncode == 0, token.stderr
            async with aiohttp.ClientSession() as session:
                campus = await Campus.seed(session, url, token.stdout.strip(), devices=2)
                await campus.uploads(session, batches=3)
                health = await campus.current(session)
                assert health["status"] == "ok", health
                assert await campus.spent(session) == 100 * campus.acknowledged == 100 * 2 * 3 * 20
            print(f"server sessions of the hub through pgbouncer: {dict(sessions(pg_server, database.params['dbname']))}")
            verified = cli("audit", "verify", "--data-dir", str(run_dir / "hub"), env=env)
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert _what_the_hub_would_have_created(database), "the probe of the refusal cases sees what a hub creates"
        finally:
            hub.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(hub.wait, 15) == 0, log_path.read_text()
    print(f"session mode: hub ready in {started - began:.1f} s, whole case {time.monotonic() - began:.1f} s")


@pytest.mark.parametrize("pool_mode", ["transaction", "statement"])
def test_behind_transaction_or_statement_pooling_the_hub_refuses_on_one_line_and_writes_nothing(
    pool_mode: str, bouncer_binary: str, database: Database, run_dir: Path,
) -> None:
    with pgbouncer(bouncer_binary, database, pool_mode, run_dir) as through:
        began = time.monotonic()
        done = cli(*serve_args(run_dir, free_port()), env={**os.environ, "CARDHUB_DATABASE_URL": through.url})
        took_s = time.monotonic() - began
    print(f"{pool_mode} mode: refused in {took_s:.1f} s: {done.stderr.strip()}")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"cardhub: the database is reached through pgbouncer in {pool_mode} pooling mode"), done.stderr
    assert "pool_mode = session" in done.stderr
    assert took_s < REFUSED_WITHIN_S
    assert _what_the_hub_would_have_created(database) == []
    # the data directory's lock is all: no hub key, no token keys
    assert {path.name for path in (run_dir / "hub").iterdir()} <= {"hub.lock"}


def _what_the_hub_would_have_created(database: Database) -> list[str]:
    """Schemas but public, tables, sequences, views and functions outside the system's schemas,
    asked of the server itself, not through pgbouncer."""
    with psycopg.connect(database.url) as conn:
        rows = conn.execute(
            "SELECT 'schema ' || nspname FROM pg_namespace"
            " WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\\_%'"
            " UNION ALL SELECT 'table ' || table_schema || '.' || table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            " UNION ALL SELECT 'relation ' || c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'"
            " UNION ALL SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    return [row[0] for row in rows]
