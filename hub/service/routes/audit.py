"""Audit routes (DESIGN §4), for auditors and admins, and merchant settlement; the audit views
are read by ``projections.audit_queries``, settlement by ``projections.ledger_queries``."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

from aiohttp import web

from domain import merkle
from domain.actors import device_actor
from domain.wire import b64encode, leaf_bytes
from hub.audit import audit_log
from hub.service import responses
from hub.service.http import Problem, authorize, json_response
from hub.service.personal import note_read
from hub.service.query import (
    AuditEventsQuery, ConsistencyQuery, InclusionQuery, LeavesQuery, SettlementQuery, documented, query,
)
from hub.service.typedefs import HUB_KEY, POOL, SEAT, SETTINGS
from projections import audit_queries, directory_queries, ledger_queries
from projections.queries import local_day

AUDITORS = ("admin", "auditor")
MAX_LEAVES = 1000
routes = web.RouteTableDef()


async def _size(conn: Any, wanted: int, name: str) -> None:
    size = await audit_queries.tree_size(conn)
    if wanted > size:
        raise Problem(422, "invalid", f"{name}: the tree has {size} leaves", field=name)


@routes.get("/v1/audit/checkpoint")
@documented("The latest signed checkpoint of the Merkle log", responses={200: responses.Checkpoint})
async def checkpoint(request: web.Request) -> web.Response:
    authorize(request, *AUDITORS)
    async with request.app[POOL].acquire() as conn:
        latest = await audit_log.latest_checkpoint(conn)
    if latest is None:  # the hub issues one at start; a race with start-up only
        request.app[SEAT].active()  # only the active hub signs checkpoints (a standby: 503 standby)
        latest = await audit_log.issue_checkpoint(request.app[POOL], request.app[HUB_KEY])
    return json_response(latest)


@routes.get("/v1/audit/leaves")
@documented("Leaf bytes [start, end), at most 1000", query=LeavesQuery, responses={200: responses.Leaves})
async def leaves(request: web.Request) -> web.Response:
    authorize(request, *AUDITORS)
    q = query(request, LeavesQuery)
    start, end = q.start, q.end
    if end <= start:
        raise Problem(422, "invalid", "end: must be greater than start", field="end")
    if end - start > MAX_LEAVES:
        raise Problem(422, "invalid", f"end: at most {MAX_LEAVES} leaves at a time", field="end")
    async with request.app[POOL].acquire() as conn:
        await _size(conn, end, "end")
        rows = await audit_queries.leaves(conn, start, end)
    if len(rows) != end - start:
        raise Problem(500, "audit_log_damaged", "leaves of the audit log have no stored event")
    return json_response({"start": start, "leaves": [
        b64encode(leaf_bytes(str(r["originator_id"]), r["originator_version"], r["topic"], bytes(r["state"])))
        for r in rows
    ]})


@routes.get("/v1/audit/proofs/inclusion")
@documented("RFC 9162 inclusion proof", query=InclusionQuery, responses={200: responses.Proof})
async def inclusion(request: web.Request) -> web.Response:
    authorize(request, *AUDITORS)
    q = query(request, InclusionQuery)
    index, size = q.index, q.tree_size
    if index >= size:
        raise Problem(422, "invalid", "index: must be less than tree_size", field="index")
    async with request.app[POOL].acquire() as conn:
        await _size(conn, size, "tree_size")
        proof = await audit_queries.with_nodes(conn, lambda get: merkle.inclusion_proof(index, size, get))
    return json_response({"hashes": [h.hex() for h in proof]})


@routes.get("/v1/audit/proofs/consistency")
@documented("RFC 9162 consistency proof", query=ConsistencyQuery, responses={200: responses.Proof})
async def consistency(request: web.Request) -> web.Response:
    authorize(request, *AUDITORS)
    q = query(request, ConsistencyQuery)
    first, second = q.first, q.second
    if first > second:
        raise Problem(422, "invalid", "first: must not exceed second", field="first")
    async with request.app[POOL].acquire() as conn:
        await _size(conn, second, "second")
        proof = await audit_queries.with_nodes(conn, lambda get: merkle.consistency_proof(first, second, get))
    return json_response({"hashes": [h.hex() for h in proof]})


@routes.get("/v1/audit/events")
@documented("Device envelopes as signed, with their results, newest first", query=AuditEventsQuery,
            responses={200: responses.AuditEvents})
async def events(request: web.Request) -> web.Response:
    """Device envelopes exactly as signed, with their results, newest first."""
    caller = authorize(request, *AUDITORS)
    page = query(request, AuditEventsQuery)
    await note_read(request, caller, "audit_events", account=page.account, card=page.card)
    found = await audit_queries.swipes(request.app[POOL], page.keyset, card=page.card, device=page.device,
                                       account=page.account, start=page.start, end=page.end)
    items = []
    for row in found.rows:
        state = json.loads(bytes(row["state"]))
        envelope = state["envelope"]
        items.append({"envelope": envelope, "result": state["result"], "recorded_at": state["recorded_at"],
                      "leaf_index": row["leaf_index"], "actor": device_actor(envelope["device"])})
    return json_response({"items": items, "next": page.next_cursor(found)})


@routes.get("/v1/merchants/{merchant_id}/settlement")
@documented("A merchant's approved purchases, reversals and refunds on one local day (JSON, or CSV with format=csv"
            " or Accept: text/csv)", query=SettlementQuery, responses={200: responses.Settlement, 404: None},
            content={200: {"text/csv": {"type": "string"}}})
async def settlement(request: web.Request) -> web.Response:
    """One local day of a merchant's approved purchases and reversals, per device and in all."""
    merchant_id = request.match_info["merchant_id"]
    authorize(request, *AUDITORS, "merchant", merchant=merchant_id)
    zone = request.app[SETTINGS].zone()
    q = query(request, SettlementQuery)
    day = q.date or datetime.now(zone).date()
    async with request.app[POOL].acquire() as conn:
        if not await directory_queries.merchant_exists(conn, merchant_id):
            raise Problem(404, "not_found", f"merchant {merchant_id} not found")
        rows = await ledger_queries.settlement(conn, merchant_id, *local_day(day, zone))
    devices = [_settled(r["device_id"], r) for r in rows]
    total = _settled(None, {k: sum(r[k] for r in rows) for k in (
        "purchases", "purchase_fen", "reversals", "reversal_fen", "refunds", "refund_fen")})
    body = {"merchant_id": merchant_id, "date": day.isoformat(), "time_zone": str(zone), **total, "devices": devices}
    if q.format == "csv" or (q.format is None and "text/csv" in request.headers.get("Accept", "")):
        return _csv(body)
    return json_response(body)


def _settled(device_id: str | None, row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {} if device_id is None else {"device_id": device_id}
    out.update({
        "purchases": {"count": row["purchases"], "amount": row["purchase_fen"]},
        "reversals": {"count": row["reversals"], "amount": row["reversal_fen"]},
        "refunds": {"count": row["refunds"], "amount": row["refund_fen"]},
        "net": row["purchase_fen"] - row["reversal_fen"] - row["refund_fen"],
    })
    return out


def _csv(body: dict[str, Any]) -> web.Response:
    """One row per device and a total row; amounts in fen."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["merchant_id", "date", "time_zone", "device_id", "purchases", "purchases_fen",
                     "reversals", "reversals_fen", "net_fen", "refunds", "refunds_fen"])
    for row in [*body["devices"], {**body, "device_id": "TOTAL"}]:
        writer.writerow([body["merchant_id"], body["date"], body["time_zone"], row["device_id"],
                         row["purchases"]["count"], row["purchases"]["amount"],
                         row["reversals"]["count"], row["reversals"]["amount"], row["net"],
                         row["refunds"]["count"], row["refunds"]["amount"]])
    name = f"settlement-{body['merchant_id']}-{body['date']}.csv"
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
