"""Money safety routes (DESIGN §11): a merchant's offline limits (admin; through the writer, so
the next online purchase is decided with them) and the exposure (admin, auditor; read from the
risk view and the ledger's balances, ``projections.risk_queries``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from domain.devices import Merchant
from hub.service import responses_risk
from hub.service.http import authorize, json_response, read_body
from hub.service.query import documented
from hub.service.schemas import LimitsIn
from hub.service.typedefs import POOL, SEAT
from projections import risk_queries

routes = web.RouteTableDef()


def limits_json(m: Merchant) -> dict[str, Any]:
    assert m.limits is not None
    return {"merchant_id": m.merchant_id, "max_amount": m.limits["max_amount_fen"],
            "max_card_day": m.limits["max_card_day_fen"], "max_device_total": m.limits["max_device_total_fen"],
            "max_offline_seconds": m.limits["max_offline_seconds"], "version": m.limits_version}


@routes.put("/v1/merchants/{merchant_id}/limits")
@documented("Set a merchant's offline limits (a new version for its devices)", body=LimitsIn,
            responses={200: responses_risk.MerchantLimits, 404: None})
async def set_limits(request: web.Request) -> web.Response:
    actor = authorize(request, "admin").actor()
    merchant_id = request.match_info["merchant_id"]
    body = await read_body(request, LimitsIn)
    answer = await request.app[SEAT].active().writer.run(lambda app: limits_json(app.set_merchant_limits(
        merchant_id, body.max_amount, body.max_card_day, body.max_device_total, body.max_offline_seconds,
        actor=actor)))
    return json_response(answer)


@routes.get("/v1/risk/exposure")
@documented("Money at risk: negative balances, flagged swipes by flag, offline devices",
            responses={200: responses_risk.Exposure})
async def exposure(request: web.Request) -> web.Response:
    authorize(request, "admin", "auditor")
    async with request.app[POOL].acquire() as conn:
        found = await risk_queries.exposure(conn)
    return json_response({
        "negative_balances": {"accounts": found.negative_accounts, "fen": found.negative_fen},
        "flagged": [{"flag": r["flag"], "events": r["events"], "fen": int(r["fen"])} for r in found.flags],
        "devices": [{"device": r["device_id"], "offline_events": r["offline_events"], "fen": int(r["fen"]),
                     "last_upload": r["last_upload"].isoformat()} for r in found.devices],
    })
