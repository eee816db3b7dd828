"""Device routes (DESIGN §2): signed uploads, the signed hotlist, the hub's public key.
No bearer token: signatures authenticate."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.application import CampusCard, Item
from domain.wire import (
    HOTLIST_PREFIX,
    Envelope,
    InvalidEnvelope,
    parse_envelope,
    sign_document,
)
from hub.service import responses
from hub.service.http import Problem, json_response, read_body
from hub.service.keys import hub_public_key_b64
from hub.service.query import SinceQuery, documented, query
from hub.service.schemas import UploadIn
from hub.service.typedefs import APPLICATION, HUB_KEY, METRICS, POOL, SETTINGS, VERIFIERS, WRITER

INLINE_VERIFY_MAX = 4  # smaller uploads are verified on the event loop, larger ones in threads
routes = web.RouteTableDef()


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
    writer = request.app[WRITER]
    writer.admit(len(body.events), device_id)  # an overloaded hub refuses before parsing or verifying
    try:
        items = await _prepare(request, device_id, body.events)
    except BaseException:
        writer.release(len(body.events), device_id)
        raise
    outcome = await writer.upload(device_id, items)
    return json_response({"results": outcome.results, "next_seq": outcome.next_seq})


def _parse(value: Any) -> Item:
    """One event of the (already well-formed JSON) upload; a bad one is an ``invalid`` result."""
    try:
        return Item(parse_envelope(value))
    except InvalidEnvelope as exc:
        return Item(exc)


async def _prepare(request: web.Request, device_id: str, raws: Sequence[Any]) -> list[Item]:
    """Parses an upload's envelopes and checks their signatures before the writer sees them,
    off its critical path: on the event loop for a small upload, in a verifier thread for a
    large one, so that one device's large uploads do not hold up everyone's small ones."""
    application = request.app[APPLICATION]
    if len(raws) <= INLINE_VERIFY_MAX:
        items, checked = _parse_and_verify(application, device_id, raws)
    else:
        loop = asyncio.get_running_loop()
        items, checked = await loop.run_in_executor(
            request.app[VERIFIERS], _parse_and_verify, application, device_id, raws
        )
    request.app[METRICS].signature_checks.inc(checked)
    return items


def _parse_and_verify(application: CampusCard, device_id: str, raws: Sequence[Any]) -> tuple[list[Item], int]:
    items = [_parse(raw) for raw in raws]
    key = application.device_keys.get(device_id)
    if key is None:  # a device the writer has not seen yet: the writer checks, in the same order
        return items, 0
    return items, _verify_in_order(items, key, application.next_seqs.get(device_id, 1))


def _verify_in_order(items: Sequence[Item], key: Ed25519PublicKey, next_seq: int) -> int:
    """Checks signatures in the upload's (``seq``) order, up to the first event that will be
    rejected: a bad signature or an invalid envelope; the writer answers the events after it
    ``not_processed`` without checking them (DESIGN §9: a forged upload costs one verification).
    Events below the device's last known ``next_seq`` are resends: the writer finds them by
    comparing with the stored envelope and verifies only one that differs (DESIGN §8: hash
    before signature). Sets each checked item's ``sig_ok``; returns how many it checked."""
    checked = 0
    for item in items:
        envelope = item.envelope
        if not isinstance(envelope, Envelope):
            break
        if envelope.seq < next_seq:
            continue
        checked += 1
        item.sig_ok = envelope.verify(key)
        if not item.sig_ok:
            break
    return checked


@routes.get("/v1/devices/{device_id}/hotlist")
@documented("Signed hotlist, whole or since a version", query=SinceQuery, auth=False,
            responses={200: responses.Hotlist, 404: None})
async def hotlist(request: web.Request) -> web.Response:
    device_id = request.match_info["device_id"]
    since = query(request, SinceQuery).since
    async with request.app[POOL].acquire() as conn:
        known = await conn.fetchval(
            "SELECT 1 FROM devices WHERE device_id = $1 AND NOT revoked", device_id
        )
        if not known:
            raise Problem(404, "not_found", f"device {device_id} is not registered or is revoked")
        version = await conn.fetchval("SELECT coalesce(max(hotlist_version), 0) FROM cards")
        full = since is None or since > version
        if full:
            rows = await conn.fetch("SELECT card_uid, status FROM cards WHERE status <> 'active' ORDER BY card_uid")
        else:
            rows = await conn.fetch(
                "SELECT card_uid, status FROM cards WHERE hotlist_version > $1 ORDER BY card_uid", since
            )
    body: dict[str, Any] = {
        "version": version,
        "full": full,
        "added": [r["card_uid"] for r in rows if r["status"] != "active"],
        "removed": [] if full else [r["card_uid"] for r in rows if r["status"] == "active"],
        "issued_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    return json_response(sign_document(HOTLIST_PREFIX, body, request.app[HUB_KEY]))


@routes.get("/v1/hub/key")
@documented("The hub's Ed25519 public key", auth=False, store=False, responses={200: responses.HubKey})
async def hub_key(request: web.Request) -> web.Response:
    return json_response({"public_key": hub_public_key_b64(request.app[HUB_KEY])})
