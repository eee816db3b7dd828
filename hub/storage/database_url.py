"""``CARDHUB_DATABASE_URL`` read as libpq reads it — several hosts included — and checked once,
so that every client (psycopg, its pools, asyncpg) gets the same whole set of parameters.

``postgresql://u:p@db1:5432,db2:5433/cardhub?target_session_attrs=read-write`` and the
keyword form ``host=db1,db2 port=5432,5433 dbname=cardhub`` are the same database: libpq
tries the hosts in order and, with ``target_session_attrs=read-write``, keeps the first that
accepts writes — after a Patroni failover, the promoted standby (DESIGN §13)."""

from __future__ import annotations

from urllib.parse import urlencode

import psycopg
from psycopg import conninfo

from hub.config import ConfigError, first_line

# What both drivers understand. libpq takes more (keepalives, options, hostaddr …) but asyncpg
# would send an unknown one to the server as a setting and fail there: refused here instead.
PARAMETERS = frozenset({
    "host", "port", "dbname", "user", "password", "passfile", "application_name", "target_session_attrs",
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword", "krbsrvname", "gsslib",
})
# libpq's and asyncpg's (≥ 0.28) values alike.
SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")
DEFAULT_PORT = 5432


def parse(url: str) -> dict[str, str]:
    """The URL's parameters, or a one-line ``ConfigError`` naming what is wrong."""
    if "\x00" in url:
        raise ConfigError("CARDHUB_DATABASE_URL holds a NUL character")
    try:
        params = {k: str(v) for k, v in conninfo.conninfo_to_dict(url).items()}
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"CARDHUB_DATABASE_URL: {first_line(exc)}") from None
    unknown = sorted(set(params) - PARAMETERS)
    if unknown:
        raise ConfigError(f"CARDHUB_DATABASE_URL: parameter {unknown[0]!r} is not supported "
                          f"(supported: {', '.join(sorted(PARAMETERS))})")
    if not params.get("dbname"):
        raise ConfigError("CARDHUB_DATABASE_URL names no database")
    _check_hosts(params)
    attrs = params.get("target_session_attrs")
    if attrs is not None and attrs not in SESSION_ATTRS:
        raise ConfigError(f"CARDHUB_DATABASE_URL: target_session_attrs={attrs!r} is not one of {', '.join(SESSION_ATTRS)}")
    return params


def _check_hosts(params: dict[str, str]) -> None:
    """libpq's rule: one port for all the hosts, or one port per host; each a TCP port number."""
    hosts = params.get("host", "").split(",")
    if "port" not in params:
        return
    ports = params["port"].split(",")
    for port in ports:
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigError(f"CARDHUB_DATABASE_URL: port {port!r} is not a number from 1 to 65535")
    if len(ports) not in (1, len(hosts)):
        raise ConfigError(f"CARDHUB_DATABASE_URL: {len(ports)} ports for {len(hosts)} hosts "
                          f"(give one port for all of them, or one per host)")


def hosts(params: dict[str, str]) -> list[tuple[str, int]]:
    """The (host, port) pairs libpq tries, in order (an empty host: the default socket)."""
    names = params.get("host", "").split(",")
    ports = params.get("port", "").split(",")
    ports = ports * len(names) if len(ports) == 1 else ports
    return [(name, int(port) if port else DEFAULT_PORT) for name, port in zip(names, ports, strict=True)]


def libpq(params: dict[str, str]) -> str:
    """The keyword conninfo for psycopg and its pools: every parameter, hosts and all."""
    return conninfo.make_conninfo(**params)


def asyncpg_dsn(params: dict[str, str]) -> str:
    """The same parameters as a URI asyncpg parses: each host with its port spelled out (asyncpg
    refuses libpq's empty entry for the default port), every parameter in the query."""
    query = dict(params)
    if "host" in query:
        pairs = hosts(params)
        query["host"] = ",".join(name for name, _ in pairs)
        query["port"] = ",".join(str(port) for _, port in pairs)
    return "postgresql://?" + urlencode(query, safe=",/")

