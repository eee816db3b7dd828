"""Access control routes (DESIGN §3): zones and rules (card office), the signed rules a gate
downloads to decide offline, the access log, and who is inside an anti-passback zone (read by
``projections.access_queries``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from domain.access import Zone
from domain.wire import RULES_PREFIX, sign_document
from hub.service import responses
from hub.service.http import CARD_OFFICE, Problem, authenticate, authorize, json_response, read_body
from hub.service.personal import note_read
from hub.service.query import AccessLogQuery, Body, SinceQuery, documented, query
from hub.service.schemas import AccessRuleIn, ZoneIn
from hub.service.typedefs import HUB_KEY, POOL, SEAT, SETTINGS
from projections import access_queries

ACCESS_READERS = ("admin", "operator", "auditor")
routes = web.RouteTableDef()


def zone_json(zone: Zone) -> dict[str, Any]:
    return {"zone": zone.zone, "name": zone.name, "anti_passback": zone.anti_passback}


@routes.post("/v1/zones")
@documented("Create an access zone", body=ZoneIn, responses={201: responses.ZoneAnswer, 409: None})
async def create_zone(request: web.Request) -> web.Response:
    actor = authorize(request, *CARD_OFFICE).actor()
    body = await read_body(request, ZoneIn)
    zone = await request.app[SEAT].active().writer.run(
        lambda app: zone_json(app.create_zone(body.zone, body.name, body.anti_passback, actor=actor)))
    return json_response(zone, status=201)


@routes.post("/v1/access-rules")
@documented("Add an access rule to a zone", body=AccessRuleIn, responses={201: responses.Rule, 404: None, 409: None})
async def create_rule(request: web.Request) -> web.Response:
    """Goes through the writer, so the next online gate decision already applies it. A warden
    adds rules to its own zones only."""
    if authenticate(request).role != "warden":
        authorize(request, *CARD_OFFICE)
    body = await read_body(request, AccessRuleIn)
    actor = authorize(request, *CARD_OFFICE, "warden", zone=body.zone).actor()
    rule = await request.app[SEAT].active().writer.run(
        lambda app: app.add_access_rule(body.zone, body.group, list(body.days), body.start, body.stop, actor=actor))
    return json_response(rule, status=201)


@routes.get("/v1/devices/{device_id}/rules")
@documented("Signed access rules of a gate's zone; 304 when not newer than `since`", query=SinceQuery, auth=False,
            responses={200: responses.DeviceRules, 304: Body(None), 404: None})
async def device_rules(request: web.Request) -> web.Response:
    """The gate's zone, its rules and the hotlist version, signed by the hub. ``version`` is
    the later of the zone's and the hotlist's; ``?since=`` that version answers 304."""
    device_id = request.match_info["device_id"]
    since = query(request, SinceQuery).since
    async with request.app[POOL].acquire() as conn:
        gate = await access_queries.gate_rules(conn, device_id)
    if gate is None:
        raise Problem(404, "not_found", f"device {device_id} is not a registered gate, or is revoked")
    zone = gate.zone_row
    version = max(zone["version"] if zone else 0, gate.hotlist_version)
    if since is not None and since >= version:
        return web.Response(status=304)
    body = {
        "device": device_id, "zone": gate.zone, "anti_passback": bool(zone and zone["anti_passback"]),
        "time_zone": request.app[SETTINGS].timezone,
        "rules": [{"rule_id": r["rule_id"], "group": r["grp"], "days": list(r["days"]),
                   "from": r["start_hhmm"], "to": r["stop_hhmm"]} for r in gate.rules],
        "version": version, "hotlist_version": gate.hotlist_version,
        "issued_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    return json_response(sign_document(RULES_PREFIX, body, request.app[HUB_KEY]))


@routes.get("/v1/access-log")
@documented("Gate swipes with their decisions, newest first", query=AccessLogQuery,
            responses={200: responses.AccessLog})
async def access_log(request: web.Request) -> web.Response:
    """A warden sees its own zones only: ``zone`` one of them, or left out for all of them. A
    read filtered by account or card is a read of that person (``Access.Read``)."""
    page = query(request, AccessLogQuery)
    caller = authenticate(request)
    zones = list(caller.zones) if caller.role == "warden" and page.zone is None else None
    if zones is None:
        caller = authorize(request, *ACCESS_READERS, "warden", zone=page.zone)
    await note_read(request, caller, "access_log", account=page.account, card=page.card)
    found = await access_queries.access_log(request.app[POOL], page.keyset, zone=page.zone, zones=zones,
                                            account=page.account, card=page.card, start=page.start, end=page.end)
    items = [{
        "zone": r["zone"], "device": r["device_id"], "seq": r["seq"], "card": r["card_uid"],
        "account_id": r["account_id"], "direction": r["direction"], "decision": r["decision"],
        **({"reason": r["reason"]} if r["reason"] else {}), "flags": list(r["flags"]),
        "offline": r["offline"], "at": r["at"], "recorded_at": r["recorded_at"].isoformat(),
    } for r in found.rows]
    return json_response({"items": items, "next": page.next_cursor(found)})


@routes.get("/v1/zones/{zone}/occupancy")
@documented("Who is inside an anti-passback zone", responses={200: responses.Occupancy, 404: None})
async def occupancy(request: web.Request) -> web.Response:
    """Who is inside an anti-passback zone now (passed in, not out)."""
    zone = request.match_info["zone"]
    authorize(request, *ACCESS_READERS, "warden", zone=zone)
    async with request.app[POOL].acquire() as conn:
        found = await access_queries.occupancy(conn, zone)
    if found is None:
        raise Problem(404, "not_found", f"zone {zone} not found")
    return json_response({
        "zone": zone, "anti_passback": found.anti_passback, "count": len(found.inside),
        "inside": [{"account_id": r["account_id"], "since": r["since"].isoformat(), "device": r["device_id"]}
                   for r in found.inside],
    })
