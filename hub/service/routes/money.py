"""Card-office money routes of DESIGN §11: refunds of purchases and account closure (销户).
(Subsidies with ``expires_at`` are granted by ``routes.admin``.)

Handlers translate: the domain (``domain.money``) decides, on the writer thread."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from domain.application import CampusCard
from hub.service import responses
from hub.service.http import CARD_OFFICE, authorize, json_response, read_body, refuse_operator_over
from hub.service.query import documented
from hub.service.schemas import CloseIn, RefundIn
from hub.service.typedefs import SEAT

routes = web.RouteTableDef()


@routes.post("/v1/accounts/{account_id}/refunds")
@documented("Refund all or part of an approved purchase of the account (idempotent by ref: 200 for a ref"
            " refunded before); 409 over_remaining, not_refundable, closed",
            body=RefundIn, responses={201: responses.Refund, 200: responses.Refund, 404: None, 409: None})
async def refund(request: web.Request) -> web.Response:
    """Back to the wallets in the purchase's proportions; never more than remains of it."""
    caller = authorize(request, *CARD_OFFICE)
    actor = caller.actor()
    account_id = request.match_info["account_id"]
    body = await read_body(request, RefundIn)
    refuse_operator_over(caller, body.amount, "refund")

    def refund(app: CampusCard) -> tuple[dict[str, Any], bool]:
        answer, created = app.refund_purchase(account_id, body.device, body.seq, body.amount, body.reason,
                                              body.ref, actor=actor)
        return {"account_id": account_id, **answer}, created

    answer, created = await request.app[SEAT].active().writer.run(refund)
    return json_response(answer, status=201 if created else 200)


@routes.post("/v1/accounts/{account_id}/close")
@documented("Close an account (销户): its cards cancelled, its cash paid out, its subsidy expired (idempotent"
            " by ref: 200 for the same ref again); 409 closed, negative_balance",
            body=CloseIn, responses={201: responses.Closure, 200: responses.Closure, 404: None, 409: None})
async def close(request: web.Request) -> web.Response:
    actor = authorize(request, *CARD_OFFICE).actor()
    account_id = request.match_info["account_id"]
    body = await read_body(request, CloseIn)

    def close(app: CampusCard) -> tuple[dict[str, Any], bool]:
        answer, created = app.close_account(account_id, body.ref, actor=actor)
        return {k: v for k, v in answer.items() if k != "ref"}, created

    answer, created = await request.app[SEAT].active().writer.run(close)
    return json_response(answer, status=201 if created else 200)
