"""Device routes (DESIGN §2, §11): signed uploads, the signed hotlist and offline limits (read by
``projections.directory_queries``), the hub's public key. No bearer token: signatures authenticate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from domain.wire import HOTLIST_PREFIX, LIMITS_PREFIX, sign_document
from hub.ingest import pipeline
from hub.service import responses, responses_risk
from hub.service.http import Problem, json_response, read_body
from hub.service.keys import hub_public_key_b64
from hub.service.query import SinceQuery, documented, query
from hub.service.schemas import UploadIn
from hub.service.typedefs import HUB_KEY, METRICS, POOL, SEAT, SETTINGS, VERIFIERS
from projections import directory_queries

routes = web.RouteTableDef()
KEY_LOOKUP_TIMEOUT_S = 1.0  # past it the writer checks the upload's signatures itself


@routes.post("/v1/devices/{device_id}/events")
@documented("Upload signed device events (protocol v1)", body=UploadIn, auth=False,
            responses={200: responses.UploadAnswer})
async def upload_events(request: web.Request) -> web.Response:
    device_id = request.match_info["device_id"]
    settings = request.app[SETTINGS]
    body = await read_body(request, UploadIn)
    if not body.events:
        raise Problem(422, "invalid", "events: at least one event is required", field="events")
    if len(body.events) > settings.upload_max_events:
        raise Problem(413, "too_large", f"events: at most {settings.upload_max_events} per upload", field="events")
    active = request.app[SEAT].active()
    pool = request.app[POOL]

    async def registered_key(device: str) -> str | None:
        """The device's registered key; None also when the store cannot say now."""
        try:
            async with asyncio.timeout(KEY_LOOKUP_TIMEOUT_S), pool.acquire() as conn:
                return await directory_queries.device_key(conn, device)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None

    outcome = await pipeline.upload(active.writer, active.application, request.app[VERIFIERS],
                                    request.app[METRICS], device_id, body.events, registered_key)
    return json_response({"results": outcome.results, "next_seq": outcome.next_seq})


@routes.get("/v1/devices/{device_id}/hotlist")
@documented("Signed hotlist, whole or since a version", query=SinceQuery, auth=False,
            responses={200: responses.Hotlist, 404: None})
async def hotlist(request: web.Request) -> web.Response:
    device_id = request.match_info["device_id"]
    since = query(request, SinceQuery).since
    async with request.app[POOL].acquire() as conn:
        found = await directory_queries.hotlist(conn, device_id, since)
    if found is None:
        raise Problem(404, "not_found", f"device {device_id} is not registered or is revoked")
    rows = found.rows
    body: dict[str, Any] = {
        "version": found.version,
        "full": found.full,
        "added": [r["card_uid"] for r in rows if r["status"] != "active"],
        "removed": [] if found.full else [r["card_uid"] for r in rows if r["status"] == "active"],
        "issued_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    return json_response(sign_document(HOTLIST_PREFIX, body, request.app[HUB_KEY]))


@routes.get("/v1/devices/{device_id}/limits")
@documented("Signed offline limits of a point-of-sale device's merchant", auth=False,
            responses={200: responses_risk.DeviceLimits, 404: None})
async def limits(request: web.Request) -> web.Response:
    """The four limits are null, and ``version`` 0, while the merchant has none."""
    device_id = request.match_info["device_id"]
    async with request.app[POOL].acquire() as conn:
        row = await directory_queries.device_limits(conn, device_id)
    if row is None:
        raise Problem(404, "not_found", f"device {device_id} is not a registered point-of-sale device, or is revoked")
    body: dict[str, Any] = {
        "device": device_id, "merchant_id": row["merchant_id"], "max_amount": row["max_amount_fen"],
        "max_card_day": row["max_card_day_fen"], "max_device_total": row["max_device_total_fen"],
        "max_offline_seconds": row["max_offline_seconds"], "version": row["limits_version"],
        "issued_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    return json_response(sign_document(LIMITS_PREFIX, body, request.app[HUB_KEY]))


@routes.get("/v1/hub/key")
@documented("The hub's Ed25519 public key", auth=False, store=False, responses={200: responses.HubKey})
async def hub_key(request: web.Request) -> web.Response:
    return json_response({"public_key": hub_public_key_b64(request.app[HUB_KEY])})
