"""The embedded PostgreSQL runs with cardhub's settings, and its data files are written back
as they change rather than in a burst 30 s later."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
import pytest

from hub.config import Settings
from hub.storage.store import EMBEDDED_SETTINGS, Database, EmbeddedPostgres, _normal, open_database
from hub.storage.writeback import WritebackPacer


def test_embedded_server_runs_with_the_settings_that_need_a_restart(pg_server: Database) -> None:
    if os.environ.get("CARDHUB_DATABASE_URL"):
        pytest.skip("the server named by CARDHUB_DATABASE_URL is configured by its DBA")
    with psycopg.connect(pg_server.url) as conn:
        for name, value in EMBEDDED_SETTINGS.items():
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            assert row is not None and _normal(row[0]) == _normal(value), (name, value, row)


def test_writeback_pacer_takes_data_files_changed_since_its_last_round(tmp_path: Path) -> None:
    pgdata = tmp_path / "pg"
    for folder in ("base/5", "global", "pg_wal"):
        (pgdata / folder).mkdir(parents=True)
    old, new, catalog, wal = (pgdata / p for p in ("base/5/16384", "base/5/16385", "global/1262", "pg_wal/0001"))
    for path in (old, new, catalog, wal):
        path.write_bytes(b"\0" * 8192)
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))

    pacer = WritebackPacer(pgdata)
    changed = sorted(pacer._changed_since(time.time() - 60))

    assert changed == sorted([str(new), str(catalog)])  # the WAL is flushed by every commit already


def test_writeback_pacer_skips_a_file_removed_meanwhile_and_stops(tmp_path: Path) -> None:
    (tmp_path / "base" / "5").mkdir(parents=True)
    data = tmp_path / "base" / "5" / "16384"
    data.write_bytes(b"x" * (1 << 20))
    pacer = WritebackPacer(tmp_path, interval_s=0.01)
    pacer.start()
    pacer.flush(str(data))
    data.unlink()
    pacer.flush(str(data))  # gone: nothing to do, nothing raised
    pacer.stop()
    pacer.stop()  # stopping twice is harmless


def test_a_tool_beside_a_running_hub_leaves_the_servers_settings_alone(tmp_path: Path) -> None:
    """``cardhub audit verify`` next to a running hub attaches to its server: no ALTER SYSTEM,
    no restart, no second writeback thread."""
    embedded = EmbeddedPostgres(tmp_path / "pg")
    database = embedded.start()
    try:
        with psycopg.connect(database.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET max_wal_size = '2GB'")
            conn.execute("SELECT pg_reload_conf()")
        postmaster = (tmp_path / "pg" / "postmaster.pid").read_text().split()[0]
        with open_database(Settings(data_dir=tmp_path), shared=True) as attached:
            assert attached.params["dbname"] == database.params["dbname"]
            with psycopg.connect(attached.url) as conn:
                row = conn.execute("SELECT current_setting('max_wal_size')").fetchone()
        assert row == ("2GB",)
        assert (tmp_path / "pg" / "postmaster.pid").read_text().split()[0] == postmaster
    finally:
        embedded.stop()


def test_a_stop_whose_checkpoint_overruns_stops_the_server_immediately_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A fast stop waits for the shutdown checkpoint; past ``FAST_STOP_S`` (here 0 s: pg_ctl
    gives up at once) the server is stopped immediately. What was committed is in the WAL,
    and the next start replays it."""
    embedded = EmbeddedPostgres(tmp_path / "pg")
    database = embedded.start()
    with psycopg.connect(database.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE swipes (n int)")
        conn.execute("INSERT INTO swipes SELECT generate_series(1, 50000)")
    monkeypatch.setattr(EmbeddedPostgres, "FAST_STOP_S", 0)
    started = time.monotonic()
    embedded.stop()
    assert time.monotonic() - started < 10
    assert not (tmp_path / "pg" / "postmaster.pid").exists()
    assert "stopping it immediately" in caplog.text or "database system is shut down" in (tmp_path / "pg" / "log").read_text()

    again = EmbeddedPostgres(tmp_path / "pg")
    database = again.start()
    try:
        with psycopg.connect(database.url) as conn:
            assert conn.execute("SELECT count(*) FROM swipes").fetchone() == (50000,)
    finally:
        again.stop()
    log_text = (tmp_path / "pg" / "log").read_text()
    assert "received immediate shutdown request" in log_text or "received fast shutdown request" in log_text
