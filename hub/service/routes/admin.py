"""Card-office routes (DESIGN §6, §12): merchants, devices, accounts, cards, top-ups, subsidies,
erasure of an account's personal data.

Handlers translate: they check the caller, decode the body and hand a command to the
writer thread; the domain decides. Answers are rendered on the writer thread, which alone
touches the (uncopied) cached aggregates."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from domain.accounts import Account
from domain.application import CampusCard
from domain.cards import Card
from domain.devices import Device, Merchant
from domain.wire import parse_instant
from hub.service import responses
from hub.service.http import (
    CARD_OFFICE, Problem, authorize, card_caller, json_response, read_body, refuse_operator_over,
)
from hub.service.query import documented
from hub.service.schemas import AccountIn, CardIn, CreditIn, DeviceIn, MerchantIn, SubsidyIn
from hub.service.typedefs import SEAT

routes = web.RouteTableDef()


def merchant_json(m: Merchant) -> dict[str, Any]:
    return {"merchant_id": m.merchant_id, "name": m.name, "category": m.category}


def device_json(d: Device) -> dict[str, Any]:
    return {
        "device_id": d.device_id, "kind": d.kind, "public_key": d.public_key,
        "merchant_id": d.merchant_id, "zone": d.zone, "location": d.location,
        "revoked": d.revoked,
    }


def account_json(a: Account, name: str | None) -> dict[str, Any]:
    """``name``: in clear, as the caller gave it (the account holds it sealed), None once erased."""
    answer = {
        "account_id": a.account_id, "name": name, "erased": a.erased_at is not None, "category": a.category,
        "groups": a.groups, "daily_limit": a.daily_limit_fen,
        "valid_from": a.valid_from, "valid_until": a.valid_until,
    }
    if a.erased_at is not None:
        answer["erased_at"] = a.erased_at
    return answer


def balance_json(a: Account) -> dict[str, Any]:
    return {"account_id": a.account_id, "cash": a.cash_fen, "subsidy": a.subsidy_fen, "total": a.total_fen}


def card_json(c: Card) -> dict[str, Any]:
    return {"card_uid": c.card_uid, "account_id": c.account_id, "status": c.status}


@routes.post("/v1/merchants")
@documented("Register a merchant", body=MerchantIn, responses={201: responses.Merchant, 409: None})
async def create_merchant(request: web.Request) -> web.Response:
    actor = authorize(request, "admin").actor()
    body = await read_body(request, MerchantIn)
    merchant = await request.app[SEAT].active().writer.run(
        lambda app: merchant_json(app.register_merchant(body.merchant_id, body.name, body.category, actor=actor))
    )
    return json_response(merchant, status=201)


@routes.post("/v1/devices")
@documented("Register a device", body=DeviceIn, responses={201: responses.Device, 404: None, 409: None})
async def create_device(request: web.Request) -> web.Response:
    actor = authorize(request, *CARD_OFFICE).actor()
    body = await read_body(request, DeviceIn)
    device = await request.app[SEAT].active().writer.run(
        lambda app: device_json(app.register_device(
            body.device_id, body.kind, body.public_key, body.merchant_id, body.zone, body.location, actor=actor,
        ))
    )
    return json_response(device, status=201)


@routes.post("/v1/devices/{device_id}/revoke")
@documented("Revoke a device", responses={200: responses.Device, 409: None})
async def revoke_device(request: web.Request) -> web.Response:
    actor = authorize(request, *CARD_OFFICE).actor()
    device_id = request.match_info["device_id"]
    device = await request.app[SEAT].active().writer.run(lambda app: device_json(app.revoke_device(device_id, actor=actor)))
    return json_response(device)


@routes.post("/v1/accounts")
@documented("Open an account", body=AccountIn, responses={201: responses.Account, 409: None})
async def create_account(request: web.Request) -> web.Response:
    actor = authorize(request, *CARD_OFFICE).actor()
    body = await read_body(request, AccountIn)
    valid_from, valid_until = _instant(body.valid_from, "valid_from"), _instant(body.valid_until, "valid_until")
    account = await request.app[SEAT].active().writer.run(
        lambda app: account_json(app.open_account(
            body.account_id, body.name, body.category, body.groups, body.daily_limit,
            valid_from, valid_until, actor=actor,
        ), body.name)
    )
    return json_response(account, status=201)


@routes.post("/v1/accounts/{account_id}/erase")
@documented("Erase an account's personal data: destroys its data key (DESIGN §12); only a closed account",
            responses={200: responses.Account, 404: None, 409: None})
async def erase_account(request: web.Request) -> web.Response:
    """409 ``not_closed`` (not closed: ``POST …/close`` first) or ``erased`` (erased before)."""
    actor = authorize(request, "admin").actor()
    account_id = request.match_info["account_id"]
    account = await request.app[SEAT].active().writer.run(
        lambda app: account_json(app.erase_account(account_id, actor=actor), None))
    return json_response(account)


@routes.post("/v1/cards")
@documented("Issue a card (replaces lost cards)", body=CardIn, responses={201: responses.Card, 404: None, 409: None})
async def issue_card(request: web.Request) -> web.Response:
    actor = authorize(request, *CARD_OFFICE).actor()
    body = await read_body(request, CardIn)
    card = await request.app[SEAT].active().writer.run(
        lambda app: card_json(app.issue_card(body.card_uid, body.account_id, actor=actor)))
    return json_response(card, status=201)


@routes.post("/v1/cards/{card_uid}/lost")
@documented("Report a card lost (挂失): the card office, or the card's own cardholder",
            responses={200: responses.Card, 404: None, 409: None})
async def report_lost(request: web.Request) -> web.Response:
    actor, owner = card_caller(request)
    uid = request.match_info["card_uid"]
    card = await request.app[SEAT].active().writer.run(lambda app: card_json(app.report_lost(uid, actor=actor, owner=owner)))
    return json_response(card)


@routes.post("/v1/cards/{card_uid}/found")
@documented("Report a lost card found (解挂): the card office, or the card's own cardholder; 409 while"
            " the account has another active card", responses={200: responses.Card, 404: None, 409: None})
async def report_found(request: web.Request) -> web.Response:
    actor, owner = card_caller(request)
    uid = request.match_info["card_uid"]
    card = await request.app[SEAT].active().writer.run(lambda app: card_json(app.report_found(uid, actor=actor, owner=owner)))
    return json_response(card)


@routes.post("/v1/accounts/{account_id}/topups")
@documented("Top up cash (idempotent by ref: 200 for a ref credited before)", body=CreditIn,
            responses={201: responses.Credit, 200: responses.Credit, 409: None})
async def top_up(request: web.Request) -> web.Response:
    return await _credit(request, "topup")


@routes.post("/v1/accounts/{account_id}/subsidies")
@documented("Grant a subsidy, optionally expiring at expires_at (idempotent by ref: 200 for a ref credited"
            " before)", body=SubsidyIn, responses={201: responses.Credit, 200: responses.Credit, 409: None})
async def grant_subsidy(request: web.Request) -> web.Response:
    return await _credit(request, "subsidy")


async def _credit(request: web.Request, kind: str) -> web.Response:
    """201 for a new ref; 200 with the same answer when the ref was credited before. An operator
    credits at most ``OPERATOR_MAX_CREDIT_FEN`` in one command (DESIGN §12); above, an admin."""
    caller = authorize(request, *CARD_OFFICE)
    actor = caller.actor()
    account_id = request.match_info["account_id"]
    body = await read_body(request, SubsidyIn if kind == "subsidy" else CreditIn)
    expires_at = _instant(getattr(body, "expires_at", None), "expires_at")
    refuse_operator_over(caller, body.amount, "credit")

    def credit(app: CampusCard) -> tuple[dict[str, Any], bool]:
        account, created = app.credit(account_id, kind, body.amount, body.ref, actor=actor, expires_at=expires_at)
        return balance_json(account), created

    balance, created = await request.app[SEAT].active().writer.run(credit)
    answer = {"account_id": account_id, "kind": kind, "amount": body.amount, "ref": body.ref,
              "balance": balance}
    return json_response(answer, status=201 if created else 200)


def _instant(text: str | None, field: str) -> Any:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise Problem(422, "invalid", f"{field}: {exc}", field=field) from None
