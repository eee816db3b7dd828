"""An external server's settings are read from the server itself, and the hub warns of the ones
that stall its commits when it starts — not when a tool (``cardhub audit verify``) connects."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from hub.config import Settings
from hub.storage import server_settings
from hub.storage.store import Database, open_database

WARNER = "hub.storage.server_settings"


def test_the_warning_follows_the_servers_own_value(database: Database, caplog: pytest.LogCaptureFixture) -> None:
    with psycopg.connect(database.url, autocommit=True) as conn:
        conn.execute("SET wal_init_zero = on")  # a superuser may, for its session: as a default server has it
        with caplog.at_level(logging.WARNING, logger=WARNER):
            assert len(server_settings.advise(conn)) == 1
        conn.execute("SET wal_init_zero = off")
        assert server_settings.advise(conn) == []
    [record] = [r for r in caplog.records if r.name == WARNER]
    assert "wal_init_zero = on" in record.getMessage() and "README, Operations" in record.getMessage()


def test_the_hub_warns_at_start_and_a_tool_does_not(database: Database, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with psycopg.connect(database.url, autocommit=True) as conn:  # this test's database only, as a default server
        conn.execute(sql.SQL("ALTER DATABASE {} SET wal_init_zero = on").format(sql.Identifier(database.params["dbname"])))
    settings = Settings(data_dir=tmp_path, database_url=database.url)
    with caplog.at_level(logging.WARNING, logger=WARNER):
        with open_database(settings, shared=True):  # cardhub audit verify, token, backup
            assert [r for r in caplog.records if r.name == WARNER] == []
        with open_database(settings):  # cardhub serve
            pass
    [record] = [r for r in caplog.records if r.name == WARNER]
    assert record.getMessage().startswith("PostgreSQL setting wal_init_zero = on: ")
