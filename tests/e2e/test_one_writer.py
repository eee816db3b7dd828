"""One writer per database (DESIGN §13): a second ``cardhub serve`` whose hub.key did not sign
the store's checkpoints refuses to start, naming the keys to share (with them it stands by:
tests/e2e/test_standby.py); a hub that loses its lock to another one stops."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest

from hub.storage.store import Database
from hub.storage.writer_lock import WriterLock
from tests.e2e.processes import CLI, free_port, ready, start
from tests.e2e.processes import run_dir  # noqa: F401 - a fixture


@pytest.fixture
def external(database: Database) -> Iterator[dict[str, str]]:
    """The environment of hubs on one database of the session's server, named by URL."""
    yield {**os.environ, "CARDHUB_DATABASE_URL": database.url}


def _lock_session(database: Database) -> int | None:
    with psycopg.connect(database.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s::int::oid"
            " AND objid = %s::int::oid AND objsubid = 2", WriterLock.KEYS,
        ).fetchone()
    return row[0] if row else None


async def test_a_second_hub_with_keys_of_its_own_exits_2_naming_the_keys_to_share(
    database: Database, external: dict[str, str], run_dir: Path,
) -> None:
    """A standby must sign as the active hub does; one with a hub.key of its own would make every
    checkpoint and hotlist it signs after a takeover fail the devices' and auditors' checks."""
    port = free_port()
    first = start(["serve", "--data-dir", str(run_dir / "one"), "--port", str(port)], run_dir / "one.log",
                  env={**external, "CARDHUB_CHECKPOINT_SECONDS": "1"})
    try:
        await ready(f"http://127.0.0.1:{port}", first, run_dir / "one.log")
        await asyncio.to_thread(_signed_checkpoint, database)
        second = await asyncio.to_thread(
            subprocess.run, [*CLI, "serve", "--data-dir", str(run_dir / "two"), "--port", str(free_port())],
            env=external, capture_output=True, text=True, timeout=60,
        )
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith("cardhub: this data dir's hub.key did not sign the store's checkpoints: "), lines[0]
        assert "hub.key and token.key" in lines[0]
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 200  # the first hub is undisturbed
            assert (await resp.json())["role"] == "active"
    finally:
        first.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait, 10) == 0


def _signed_checkpoint(database: Database, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database.url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            try:
                if conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone()[0]:
                    return
            except psycopg.errors.UndefinedTable:
                pass
            time.sleep(0.1)
    raise AssertionError("no checkpoint signed")


async def test_a_hub_that_loses_its_lock_takes_it_again_or_stops_if_another_holds_it(
    database: Database, external: dict[str, str], run_dir: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = start(["serve", "--data-dir", str(run_dir / "one"), "--port", str(port)], run_dir / "one.log", env=external)
    try:
        await ready(url, hub, run_dir / "one.log")
        holder = _lock_session(database)
        assert holder is not None
        with psycopg.connect(database.url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (holder,))
        deadline = time.monotonic() + 5
        while (again := _lock_session(database)) in (None, holder) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert again not in (None, holder), "the hub took the lock again"

        # Now another session takes the lock the moment the hub's session is ended.
        with psycopg.connect(database.url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (again,))
            conn.execute("SELECT pg_advisory_lock(%s, %s)", WriterLock.KEYS)
            status = await asyncio.to_thread(hub.wait, 15)
        assert status == 2
        assert "another hub is writing to this database" in (run_dir / "one.log").read_text()
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait()
