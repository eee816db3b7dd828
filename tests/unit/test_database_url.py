"""CARDHUB_DATABASE_URL as libpq reads it: several hosts, target_session_attrs, and every bad
URL refused on one line before anything connects (DESIGN §13)."""

from __future__ import annotations

import pytest
from asyncpg import connect_utils

from hub.config import ConfigError
from hub.storage import database_url
from hub.storage.persistence import CONNINFO, TOPIC
from hub.storage.store import Database

MULTI = "postgresql://u:p@db1:5432,db2:5433/cardhub?target_session_attrs=read-write"


def _asyncpg_targets(dsn: str) -> tuple[list[tuple[str, int]], object]:
    """What asyncpg itself makes of a DSN: its hosts and its session attributes."""
    addrs, params = connect_utils._parse_connect_dsn_and_args(
        dsn=dsn, host=None, port=None, user=None, password=None, passfile=None, database=None, ssl=None,
        service=None, servicefile=None, direct_tls=None, server_settings=None, target_session_attrs=None,
        krbsrvname=None, gsslib=None,
    )
    return addrs, params


def test_a_multi_host_url_keeps_every_host_and_the_session_attrs() -> None:
    params = database_url.parse(MULTI)
    assert params == {"user": "u", "password": "p", "dbname": "cardhub", "host": "db1,db2", "port": "5432,5433",
                      "target_session_attrs": "read-write"}
    assert database_url.hosts(params) == [("db1", 5432), ("db2", 5433)]


def test_the_keyword_form_is_the_same_database() -> None:
    params = database_url.parse("host=db1,db2 port=5432,5433 dbname=cardhub user=u password=p target_session_attrs=read-write")
    assert params == database_url.parse(MULTI)


def test_one_port_serves_every_host_and_an_empty_one_is_the_default() -> None:
    assert database_url.hosts(database_url.parse("host=db1,db2 port=6000 dbname=x")) == [("db1", 6000), ("db2", 6000)]
    assert database_url.hosts(database_url.parse("postgresql://u@db1:6000,db2/x")) == [("db1", 6000), ("db2", 5432)]
    assert database_url.hosts(database_url.parse("postgresql://u@db1,db2:6000/x")) == [("db1", 5432), ("db2", 6000)]


def test_psycopg_gets_the_whole_conninfo() -> None:
    database = Database.from_url(MULTI)
    assert database.url == "user=u password=p dbname=cardhub host=db1,db2 port=5432,5433 target_session_attrs=read-write"
    env = database.eventsourcing_env()
    assert env["PERSISTENCE_MODULE"] == TOPIC and env[CONNINFO] == database.url


def test_asyncpg_gets_every_host_and_the_session_attrs() -> None:
    addrs, params = _asyncpg_targets(Database.from_url(MULTI).asyncpg_kwargs()["dsn"])
    assert addrs == [("db1", 5432), ("db2", 5433)]
    assert (params.user, params.password, params.database) == ("u", "p", "cardhub")
    assert params.target_session_attrs.value == "read-write"


def test_asyncpg_gets_a_socket_directory_and_default_ports() -> None:
    addrs, _ = _asyncpg_targets(Database.from_url("postgresql://u@/x?host=/run/pg").asyncpg_kwargs()["dsn"])
    assert addrs == ["/run/pg/.s.PGSQL.5432"]
    addrs, _ = _asyncpg_targets(Database.from_url("postgresql://u@db1:6000,db2/x").asyncpg_kwargs()["dsn"])
    assert addrs == [("db1", 6000), ("db2", 5432)]


def test_asyncpg_gets_tls_settings_too() -> None:
    _, params = _asyncpg_targets(Database.from_url("postgresql://u@db1/x?sslmode=require").asyncpg_kwargs()["dsn"])
    assert params.sslmode.name == "require"


@pytest.mark.parametrize(("url", "says"), [
    ("postgresql://u@db1/cardhub\x00x", "NUL"),
    ("postgresql://u@db1\x00/cardhub", "NUL"),
    ("postgresql://u@db1:99999/cardhub", "port '99999'"),
    ("postgresql://u@db1:0/cardhub", "port '0'"),
    ("postgresql://u@db1:x/cardhub", "port 'x'"),
    ("host=db1 port=５４３２ dbname=x", "port '５４３２'"),
    ("host=db1,db2,db3 port=1,2 dbname=x", "2 ports for 3 hosts"),
    ("host=db1 port=1,2 dbname=x", "2 ports for 1 hosts"),
    ("postgresql://u@db1/cardhub?target_session_attrs=writable", "target_session_attrs='writable'"),
    ("postgresql://u@db1/cardhub?options=-cwork_mem%3D1MB", "parameter 'options' is not supported"),
    ("postgresql://u@db1/cardhub?nonsense=1", "invalid URI query parameter"),
    ("postgresql://u@db1", "names no database"),
    ("host=db1 dbname='unclosed", "CARDHUB_DATABASE_URL"),
])
def test_a_bad_url_is_one_line_naming_the_fault(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Database.from_url(url)
    message = str(caught.value)
    assert says in message and "\n" not in message
