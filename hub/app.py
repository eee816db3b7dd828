"""``create_app``: builds the hub — application, projections, reads pool, writer, routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import asyncpg
from aiohttp import web

from domain.application import CampusCard
from hub import (
    audit_log, recorder, routes_access, routes_admin, routes_audit, routes_dashboard, routes_devices, routes_reads,
    routes_stats,
)
from hub.config import Settings
from hub.http import problem_middleware
from hub.keys import load_or_create_key
from hub.metrics import Metrics
from hub.openapi import openapi
from hub.projector import Projector
from hub.store import Database
from hub.typedefs import APPLICATION, HUB_KEY, METRICS, POOL, PROJECTOR, SETTINGS, VERIFIERS, WRITER
from hub.writer import IngestWriter

log = logging.getLogger(__name__)
SUPERVISE_SECONDS = 1.0


def application_env(database: Database) -> dict[str, str]:
    """The eventsourcing settings of the writer's Application."""
    return {
        **database.eventsourcing_env(),
        # One writer per process owns the aggregates, so cached ones are current (DESIGN §8).
        "AGGREGATE_CACHE_MAXSIZE": "500000",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        # The writer changes cached aggregates in place (no copy per swipe); a failed save
        # evicts them (CampusCard.save), and handlers only see JSON made on the writer thread.
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
        "POSTGRES_POOL_SIZE": "2",
        "APPLICATION_RECORDER_TOPIC": recorder.TOPIC,
    }


def create_app(settings: Settings, database: Database) -> web.Application:
    app = web.Application(
        middlewares=[problem_middleware], client_max_size=settings.body_max_bytes
    )
    app[SETTINGS] = settings
    app[HUB_KEY] = load_or_create_key(settings.data_dir)
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_resources(database))
    app.router.add_routes(routes_admin.routes)
    app.router.add_routes(routes_devices.routes)
    app.router.add_routes(routes_reads.routes)
    app.router.add_routes(routes_audit.routes)
    app.router.add_routes(routes_access.routes)
    app.router.add_routes(routes_stats.routes)
    app.router.add_routes(routes_dashboard.routes)
    app.router.add_get("/openapi.json", openapi)
    return app


def _resources(database: Database):  # noqa: ANN202 - an aiohttp cleanup context
    async def resources(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        env = application_env(database)
        application = await asyncio.to_thread(CampusCard, env, timezone=settings.zone())
        app[APPLICATION] = application
        projector = await asyncio.to_thread(
            Projector, {**database.eventsourcing_env(), **settings.projection_settings()}
        )
        await asyncio.to_thread(projector.start)
        app[PROJECTOR] = projector
        app[POOL] = await asyncpg.create_pool(
            min_size=1, max_size=8, init=routes_reads.decode_numeric_as_int, **database.asyncpg_kwargs()
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
            asyncio.create_task(audit_log.issue_checkpoints(
                app[POOL], app[HUB_KEY], every_s=settings.checkpoint_seconds, every_events=settings.checkpoint_events,
            )),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(writer.stop)
            app[VERIFIERS].shutdown()
            await app[POOL].close()
            await asyncio.to_thread(projector.stop)
            await asyncio.to_thread(application.close)

    return resources


async def _supervise(projector: Projector) -> None:
    while True:
        await asyncio.sleep(SUPERVISE_SECONDS)
        await asyncio.to_thread(projector.restart_if_dead)
