"""``create_app``: builds the hub — application, projections, reads pool, writer, routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
from aiohttp import web

from domain.application import CampusCard
from domain.wire import CHECKPOINT_PREFIX, verify_document
from hub.audit import audit_log
from hub.config import ConfigError, Settings, first_line
from hub.ingest import expiry, recorder
from hub.ingest.application import IngestCampusCard
from hub.ingest.verifying import Verifiers
from hub.ingest.writer import IngestWriter
from hub.runner.projector import Projector
from hub.service.http import problem_middleware
from hub.service.keys import load_or_create_key
from hub.service.metrics import Metrics
from hub.service.openapi import openapi
from hub.service.routes import access as routes_access
from hub.service.routes import admin as routes_admin
from hub.service.routes import app as routes_app
from hub.service.routes import audit as routes_audit
from hub.service.routes import dashboard as routes_dashboard
from hub.service.routes import money as routes_money
from hub.service.routes import devices as routes_devices
from hub.service.routes import readers as routes_readers
from hub.service.routes import reads as routes_reads
from hub.service.routes import risk as routes_risk
from hub.service.routes import sessions as routes_sessions
from hub.service.routes import stats as routes_stats
from hub.service.routes import tokens as routes_tokens
from hub.service.routes import virtual_cards as routes_virtual_cards
from hub.service.seat import Active, Seat
from hub.service.sign_in import SignIn
from hub.service.token_keys import TokenKeyring
from hub.service.token_registry import TokenRegistry
from hub.service.typedefs import (
    HUB_KEY, METRICS, POOL, SEAT, SETTINGS, SIGN_IN, TOKEN_KEYS, TOKENS, VERIFIERS,
)
from hub.storage import store
from hub.storage.budget import READS, VIEW_WAITS, Budget, pool_env
from hub.storage.store import CONNECT_TIMEOUT_S, Database
from hub.storage.writer_lock import OtherWriter, WriterLock

log = logging.getLogger(__name__)
SUPERVISE_SECONDS = 1.0
RELOCK_SECONDS = 0.5
# The writer's wait for a connection: an upload queued behind a batch that is waiting in vain
# is answered 503 within two of them.
WRITER_POOL_WAIT_S = 0.5


def application_env(database: Database, budget: Budget | None = None) -> dict[str, str]:
    """The eventsourcing settings of the writer's Application (its pool: ``budget``'s, by default the default's)."""
    return {
        **database.eventsourcing_env(),
        **(budget or Budget.of(Settings().db_pool)).writer_env(),
        # One writer per process owns the aggregates, so cached ones are current (DESIGN §8).
        "AGGREGATE_CACHE_MAXSIZE": "500000",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        # The writer changes cached aggregates in place (no copy per swipe); a failed save
        # evicts them (IngestCampusCard.save), and handlers only see JSON made on the writer thread.
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
        "APPLICATION_RECORDER_TOPIC": recorder.TOPIC,
    }


def create_app(settings: Settings, database: Database) -> web.Application:
    app = web.Application(
        middlewares=[problem_middleware], client_max_size=settings.body_max_bytes
    )
    app[SETTINGS] = settings
    app[HUB_KEY] = load_or_create_key(settings.data_dir)  # hotlists, rules, checkpoints
    app[TOKEN_KEYS] = TokenKeyring(settings.data_dir)  # bearer tokens (DESIGN §12)
    app[TOKENS] = TokenRegistry()
    app[SIGN_IN] = SignIn()  # PINs and the lockout of sign-in (DESIGN §10); tests may set its clock
    app[METRICS] = Metrics()
    app[SEAT] = Seat()  # standby until it holds the writer lock (DESIGN §13)
    app.cleanup_ctx.append(_resources(database))
    app.router.add_routes(routes_admin.routes)
    app.router.add_routes(routes_money.routes)
    app.router.add_routes(routes_devices.routes)
    app.router.add_routes(routes_reads.routes)
    app.router.add_routes(routes_readers.routes)
    app.router.add_routes(routes_audit.routes)
    app.router.add_routes(routes_access.routes)
    app.router.add_routes(routes_stats.routes)
    app.router.add_routes(routes_dashboard.routes)
    app.router.add_routes(routes_app.routes)
    app.router.add_routes(routes_tokens.routes)
    app.router.add_routes(routes_virtual_cards.routes)
    app.router.add_routes(routes_risk.routes)
    app.router.add_routes(routes_sessions.routes)
    app.router.add_get("/openapi.json", openapi)
    return app


def _resources(database: Database):  # noqa: ANN202 - an aiohttp cleanup context
    async def resources(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        budget = Budget.of(settings.db_pool)
        store.fast_reconnects()
        lock = WriterLock(database)
        holder = await lock.try_acquire()  # before anything is written, even the tables
        duties = Duties(app, database, budget, lock)
        served = False
        try:
            # min_size=0: asyncpg restores a floor of connections with a traceback per failed try.
            app[POOL] = await asyncpg.create_pool(
                min_size=0, max_size=budget.reads, connect=store.connect_reads, init=store.decode_numeric_as_int,
                **database.asyncpg_kwargs(), server_settings={"application_name": READS},
            )
            app[VERIFIERS] = Verifiers()
            if holder is None:
                await duties.take_seat()
            else:
                await duties.stand_by(holder)
            duties.start()
            served = True
            yield
        finally:
            # One line on the way out, each step timed: a stop that overran says where.
            steps: list[str] = []
            timed = _Timed(steps)
            async with timed("tasks and the writer's drain"):
                await duties.stop()
            if VERIFIERS in app:
                async with timed("verifiers"):
                    await asyncio.to_thread(app[VERIFIERS].shutdown)
            if POOL in app:
                async with timed("reads pool"):
                    await app[POOL].close()
            async with timed("projections and the application"):
                await duties.close()
            async with timed("writer lock"):
                await lock.release()
            if served:  # a hub that could not start says why in one line, and nothing more
                log.info("stopped: %s", ", ".join(steps))

    return resources


class _Timed:
    """``async with timed("step"):`` appends "step 0.12 s" to ``steps`` however the step ends."""

    def __init__(self, steps: list[str]) -> None:
        self.steps = steps

    @contextlib.asynccontextmanager
    async def __call__(self, step: str) -> AsyncIterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.steps.append(f"{step} {time.monotonic() - started:.2f} s")


class Duties:
    """What a hub runs besides its routes: as a standby, its election and the token revocations;
    once active (at start, or elected), its Application, projections, writer thread and the tasks
    that write — checkpoints, subsidy expiry — and the watch on its writer lock."""

    def __init__(self, app: web.Application, database: Database, budget: Budget, lock: WriterLock) -> None:
        self.app, self.database, self.budget, self.lock = app, database, budget, lock
        self.seat = app[SEAT]
        self.tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closing: Active | None = None  # what ``stop`` took from the seat, for ``close``

    async def stand_by(self, holder: str) -> None:
        """Reads only; the election (``_elect``) asks for the lock every ``ELECT_EVERY_S``."""
        await self._check_hub_key()  # now, not at the takeover
        self.seat.holder = holder
        log.warning("another hub is writing to this database: %s; standing by (reads only) to take over when it stops",
                    holder)
        # Decodes stored events for /healthz; it creates nothing and never connects.
        self.seat.decoder = (await asyncio.to_thread(CampusCard, env={
            **self.database.eventsourcing_env(), **pool_env(VIEW_WAITS, 1), "CREATE_TABLE": "n"})).mapper

    async def take_seat(self) -> None:
        """Builds what the hub writes with, from the store, and makes it the active hub."""
        app, settings = self.app, self.app[SETTINGS]
        await self._check_hub_key()
        application = await asyncio.to_thread(IngestCampusCard, application_env(self.database, self.budget),
                                              timezone=settings.zone(), hub_key=app[HUB_KEY].public_key())
        try:
            application.recorder.datastore.pool.timeout = WRITER_POOL_WAIT_S
            if application.snapshots is not None:
                recorder.bound_retries(application.snapshots.recorder)
            projector = await asyncio.to_thread(
                Projector, {**self.database.eventsourcing_env(), **settings.projection_settings()}, self.budget
            )
        except BaseException:
            await asyncio.to_thread(application.close)
            raise
        await asyncio.to_thread(projector.start)
        writer = IngestWriter(
            application, asyncio.get_running_loop(), app[METRICS],
            queue_max_uploads=settings.queue_max_uploads, batch_max_events=settings.batch_max_events,
            queue_max_events=settings.queue_max_events,
        )
        writer.start()
        self.seat.take(Active(application, writer, projector))
        app[METRICS].active.set(1)
        if self._started:
            self._start_writing()

    def start(self) -> None:
        """The tasks, once the reads pool exists."""
        app = self.app
        self._started = True
        self.tasks.append(asyncio.create_task(_outliving_outages(
            "token revocations", lambda: app[TOKENS].follow(app[POOL]))))
        if self.seat.standby:
            self.tasks.append(asyncio.create_task(self._elect(), name="election"))
        else:
            self._start_writing()

    def _start_writing(self) -> None:
        app, settings, active = self.app, self.app[SETTINGS], self.seat.active()
        self.tasks += [
            asyncio.create_task(_supervise(active.projector)),
            asyncio.create_task(_hold(self.lock, active.application.recorder, app)),
            asyncio.create_task(_outliving_outages("audit checkpoints", lambda: audit_log.issue_checkpoints(
                app[POOL], app[HUB_KEY], every_s=settings.checkpoint_seconds, every_events=settings.checkpoint_events,
            ))),
            asyncio.create_task(_outliving_outages("subsidy expiry", lambda: expiry.expire_forever(
                app[POOL], active.writer, active.application))),
        ]

    async def _elect(self) -> None:
        """Asks for the writer lock every ``ELECT_EVERY_S`` (the active hub's death frees it: its
        session ends) and takes over once it has it; a store outage is waited out."""
        quiet = False
        while True:
            await asyncio.sleep(ELECT_EVERY_S)
            try:
                holder = await self.lock.try_acquire()
            except store.STORE_ERRORS as exc:
                if not quiet:
                    log.warning("election: the store is unavailable (%s); asking again", type(exc).__name__)
                quiet = True
                continue
            quiet = False
            if holder is not None:
                self.seat.holder = holder
                continue
            log.warning("took the writer lock: taking over as the active hub")
            started = time.monotonic()
            try:
                await self.take_seat()
            # Whatever stops it (the store went away, a wrong hub.key), a hub that holds the lock
            # but cannot write must let go of it: it stops (exit status 2) and its restart stands by.
            except Exception as exc:
                log.error("could not take over: %s", first_line(exc))
                self.seat.stop_because(f"could not take over as the active hub: {first_line(exc)}")
                return
            log.warning("active: writing (took over in %.2f s)", time.monotonic() - started)
            return

    async def _check_hub_key(self) -> None:
        """A hub signs hotlists and checkpoints with ``hub.key``: one that writes with a key of its
        own would break every device's and auditor's check, so it refuses (DESIGN §13: the hubs
        of one database share ``hub.key`` and ``token.key``)."""
        try:
            async with self.app[POOL].acquire(timeout=CONNECT_TIMEOUT_S) as conn:
                latest = await audit_log.latest_checkpoint(conn)
        except asyncpg.UndefinedTableError:  # a new database: nothing signed yet
            return
        if latest is not None and not verify_document(CHECKPOINT_PREFIX, latest, self.app[HUB_KEY].public_key()):
            raise ConfigError("this data dir's hub.key did not sign the store's checkpoints: the hubs of one"
                              " database share hub.key and token.key (copy both from the active hub's data dir)")

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task, outcome in zip(self.tasks, await asyncio.gather(*self.tasks, return_exceptions=True), strict=True):
            if not isinstance(outcome, asyncio.CancelledError | None):  # the stop goes on regardless
                log.error("task %s had failed: %r", task.get_name(), outcome)
        self._closing = self.seat.leave()
        if self._closing is not None:
            await asyncio.to_thread(self._closing.writer.stop)

    async def close(self) -> None:
        """After the reads pool: the projections' process, then the Application."""
        if self._closing is not None:
            await asyncio.to_thread(self._closing.projector.stop)
            await asyncio.to_thread(self._closing.application.close)


ELECT_EVERY_S = 0.25


async def _outliving_outages(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Runs a task of the hub's life again when the store went away under it (one log line
    per outage: a run that fails at once again is the same outage)."""
    quiet = False
    while True:
        started = time.monotonic()
        try:
            await run()
        except store.STORE_ERRORS as exc:
            quiet = quiet and time.monotonic() - started < QUIET_RUN_S
            if not quiet:
                log.warning("%s: the store is unavailable (%s); trying again every %.0f s", name, type(exc).__name__, RESTART_TASK_S)
            quiet = True
        await asyncio.sleep(RESTART_TASK_S)


RESTART_TASK_S = 1.0
QUIET_RUN_S = 10.0  # a run shorter than this that fails again is the same outage


async def _hold(lock: WriterLock, events: recorder.ArrayInsertRecorder, app: web.Application) -> None:
    """Keeps the writer lock. When its connection is lost (the server restarted, or the session
    was ended) the hub stops writing at once — the writer's batches fail, answered 503 — and
    takes the lock again; if another hub took it meanwhile, this hub stops (exit status 2)."""
    while True:
        await lock.lost()
        events.fenced = "this hub lost the database's writer lock; it writes again once it holds it"
        log.error("lost the writer lock's connection: not writing until the lock is taken again")
        while True:
            await asyncio.sleep(RELOCK_SECONDS)
            try:
                await lock.acquire()
            except OtherWriter as exc:
                log.error("%s: stopping", exc)
                app[SEAT].stop_because(str(exc))
                return
            except store.STORE_ERRORS:
                continue
            break
        events.fenced = None
        log.warning("holding the writer lock again: writing")


async def _supervise(projector: Projector) -> None:
    while True:
        await asyncio.sleep(SUPERVISE_SECONDS)
        await asyncio.to_thread(projector.restart_if_dead)
