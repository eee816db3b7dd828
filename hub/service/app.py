"""``create_app``: builds the hub — application, projections, reads pool, writer, routes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import asyncpg
from aiohttp import web

from hub.audit import audit_log
from hub.config import Settings
from hub.ingest import expiry, recorder
from hub.ingest.application import IngestCampusCard
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
from hub.service.sign_in import SignIn
from hub.service.token_keys import TokenKeyring
from hub.service.token_registry import TokenRegistry
from hub.service.typedefs import (
    APPLICATION, HUB_KEY, METRICS, POOL, PROJECTOR, SETTINGS, SIGN_IN, TOKEN_KEYS, TOKENS, VERIFIERS, WRITER,
)
from hub.storage import store
from hub.storage.budget import READS, Budget
from hub.storage.store import Database
from hub.storage.writer_lock import OtherWriter, WriterLock

log = logging.getLogger(__name__)
SUPERVISE_SECONDS = 1.0
RELOCK_SECONDS = 0.5
# The writer's wait for a connection: an upload queued behind a batch that is waiting in vain
# is answered 503 within two of them.
WRITER_POOL_WAIT_S = 0.5
# Why the hub stopped itself (it lost the writer lock to another hub); ``cardhub serve`` exits 2.
STOPPED_BECAUSE = web.AppKey("stopped_because", str)


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
        await lock.acquire()  # before anything is written, even the tables
        env = application_env(database, budget)
        application = await asyncio.to_thread(IngestCampusCard, env, timezone=settings.zone(),
                                              hub_key=app[HUB_KEY].public_key())  # checks payment codes
        app[APPLICATION] = application
        application.recorder.datastore.pool.timeout = WRITER_POOL_WAIT_S
        if application.snapshots is not None:
            recorder.bound_retries(application.snapshots.recorder)
        projector = await asyncio.to_thread(
            Projector, {**database.eventsourcing_env(), **settings.projection_settings()}, budget
        )
        await asyncio.to_thread(projector.start)
        app[PROJECTOR] = projector
        # min_size=0: asyncpg restores a floor of connections with a traceback per failed try.
        app[POOL] = await asyncpg.create_pool(
            min_size=0, max_size=budget.reads, connect=store.connect_reads, init=store.decode_numeric_as_int,
            **database.asyncpg_kwargs(), server_settings={"application_name": READS},
        )
        app[VERIFIERS] = ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify")
        writer = IngestWriter(
            application, asyncio.get_running_loop(), app[METRICS],
            queue_max_uploads=settings.queue_max_uploads, batch_max_events=settings.batch_max_events,
            queue_max_events=settings.queue_max_events,
        )
        writer.start()
        app[WRITER] = writer
        tasks = [
            asyncio.create_task(_supervise(projector)),
            asyncio.create_task(_hold(lock, application.recorder, app)),
            asyncio.create_task(_outliving_outages("audit checkpoints", lambda: audit_log.issue_checkpoints(
                app[POOL], app[HUB_KEY], every_s=settings.checkpoint_seconds, every_events=settings.checkpoint_events,
            ))),
            asyncio.create_task(_outliving_outages("token revocations", lambda: app[TOKENS].follow(app[POOL]))),
            asyncio.create_task(_outliving_outages("subsidy expiry", lambda: expiry.expire_forever(
                app[POOL], writer, application))),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task, outcome in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True):
                if not isinstance(outcome, asyncio.CancelledError | None):  # the stop goes on regardless
                    log.error("task %s had failed: %r", task.get_name(), outcome)
            await asyncio.to_thread(writer.stop)
            app[VERIFIERS].shutdown()
            await app[POOL].close()
            await asyncio.to_thread(projector.stop)
            await asyncio.to_thread(application.close)
            await lock.release()

    return resources


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
                app[STOPPED_BECAUSE] = str(exc)
                os.kill(os.getpid(), signal.SIGTERM)  # the hub's own graceful stop
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
