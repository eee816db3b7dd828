"""Read routes over the ledger's views (``projections.ledger_queries``), health, metrics."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from domain import personal
from hub.service import responses
from hub.service.health import Health, StoreUnreachable, read_health
from hub.service.http import RETRY_AFTER_SECONDS, Problem, authorize, json_response
from hub.service.personal import account_page, note_read
from hub.service.query import Body, KeysetQuery, PageQuery, documented
from hub.service.typedefs import METRICS, POOL, SEAT
from hub.storage.budget import PROJECTIONS as PROJECTIONS_POOL
from projections import directory_queries, ledger_queries

ACCOUNT_READERS = ("admin", "operator", "auditor", "cardholder")
routes = web.RouteTableDef()


@routes.get("/v1/accounts/{account_id}")
@documented("An account; its name is null once erased (DESIGN §12)", responses={200: responses.Account, 404: None})
async def account(request: web.Request) -> web.Response:
    """The name is opened here, with the account's data key: the views keep none."""
    account_id = request.match_info["account_id"]
    caller = authorize(request, *ACCOUNT_READERS, account=account_id)
    await note_read(request, caller, "account", account=account_id)
    try:
        found = await ledger_queries.account(request.app[POOL], account_id)
    except personal.Unreadable as exc:
        raise Problem(500, "personal_data_damaged", str(exc)) from None
    if found is None:
        raise Problem(404, "not_found", f"account {account_id} not found")
    answer = {
        "account_id": account_id, "name": found.name, "erased": found.erased, "category": found.category,
        "groups": found.groups, "daily_limit": found.daily_limit_fen,
        "valid_from": found.valid_from, "valid_until": found.valid_until,
    }
    if found.erased_at is not None:
        answer["erased_at"] = found.erased_at.isoformat()
    return json_response(answer)


@routes.get("/v1/accounts/{account_id}/balance")
@documented("Balance in fen", responses={200: responses.Balance, 404: None})
async def balance(request: web.Request) -> web.Response:
    account_id = request.match_info["account_id"]
    caller = authorize(request, *ACCOUNT_READERS, account=account_id)
    await note_read(request, caller, "balance", account=account_id)
    row = await ledger_queries.balance(request.app[POOL], account_id)
    if row is None:
        raise Problem(404, "not_found", f"account {account_id} not found")
    return json_response({
        "account_id": account_id, "cash": row["cash_fen"], "subsidy": row["subsidy_fen"],
        "total": row["cash_fen"] + row["subsidy_fen"],
    })


@routes.get("/v1/accounts/{account_id}/transactions")
@documented("Transactions, newest first", query=PageQuery, responses={200: responses.Transactions, 404: None})
async def transactions(request: web.Request) -> web.Response:
    page, found = await account_page(request, ACCOUNT_READERS, "transactions", ledger_queries.transactions)
    return json_response({"items": [_transaction_json(r) for r in found.rows], "next": page.next_cursor(found)})


def _transaction_json(row: Any) -> dict[str, Any]:
    item = {
        "kind": row["kind"], "amount": row["amount_fen"], "subsidy": row["subsidy_fen"],
        "cash": row["cash_fen"], "balance": row["balance_fen"],
        "recorded_at": row["recorded_at"].isoformat(),
    }
    if row["kind"] in ("topup", "subsidy", "payout", "expiry"):
        item["ref"] = row["ref"]
        return item
    item.update({  # a purchase, a reversal, or a refund (at its purchase's time)
        "decision": row["decision"], "card": row["card_uid"], "device": row["device_id"], "seq": row["seq"],
        "merchant_id": row["merchant_id"], "merchant_name": row["merchant_name"], "location": row["location"],
        "at": row["at"], "flags": list(row["flags"]),
        "medium": "phone" if row["card_kind"] == "virtual" else "card",  # a virtual card's (DESIGN §10)
    })
    if row["kind"] == "refund":  # ``reason``: the card office's text
        item.update({"ref": row["ref"], "reason": row["reason"]})
    elif row["reason"]:
        item["reason"] = row["reason"]
    return item


@routes.get("/v1/accounts/{account_id}/cards")
@documented("The account's cards (chip and virtual) with their status, newest issued first", query=KeysetQuery,
            responses={200: responses.Cards, 404: None})
async def cards(request: web.Request) -> web.Response:
    """Read from the directory's view: a card just issued or reported may take a moment to show."""
    page, found = await account_page(request, ACCOUNT_READERS, "cards", directory_queries.account_cards, KeysetQuery)
    items = [_card_item(r) for r in found.rows]
    return json_response({"items": items, "next": page.next_cursor(found)})


def _card_item(row: Any) -> dict[str, Any]:
    item = {"card_uid": row["card_uid"], "status": row["status"], "kind": row["kind"]}
    if row["kind"] == "virtual":  # DESIGN §10: a phone's card, with its name and its cert's expiry
        item.update(label=row["label"], valid_until=row["valid_until"])
    return item


@routes.get("/healthz")
@documented("Health, store position and projection lag", responses={200: responses.Health}, auth=False)
async def healthz(request: web.Request) -> web.Response:
    """``ok``, or ``degraded`` with ``problems`` when a projection is failing (the notification
    it failed on, the error), lags more than ``LAG_LIMIT_S``, or the projections' process cannot
    get a database connection (``pool``, the error); 503 only when the database
    cannot be reached within ``HEALTH_TIMEOUT_S``."""
    app = request.app
    try:
        health = await read_health(app)
    except StoreUnreachable as exc:
        raise Problem(503, "store_unavailable", f"the event store cannot be reached: {exc}",
                      headers={"Retry-After": RETRY_AFTER_SECONDS}) from None
    store, views, seat = health.store, health.views, app[SEAT]
    problems = _problems(app, health)
    body: dict[str, Any] = {
        "status": "degraded" if problems else "ok",
        "role": seat.role,
        "store_position": store,
        "projections": {name: {"position": p, "lag_events": store - p, "lag_seconds": round(health.lag_s[name], 3)}
                        for name, p in views.items()},
        "writer_queue": 0 if seat.standby else seat.active().writer.depth,
    }
    if seat.standby:
        body["active"] = seat.holder
    if problems:
        body["problems"] = problems
    return json_response(body)


def _problems(app: web.Application, health: Health) -> list[dict[str, Any]]:
    """What makes the hub ``degraded``: a projection failing or lagging (``Health.problems``), or
    a projections' process that cannot get a database connection (the budget, DESIGN §13)."""
    problems = health.problems()
    if app[SEAT].standby:  # the active hub's projections write the views: their lag shows above
        return problems
    shortage = app[SEAT].active().projector.shortage()  # the projections' process cannot connect: say so, not just lag
    if shortage is not None:
        problems.append({"pool": PROJECTIONS_POOL, "error": shortage})
    return problems


@routes.get("/metrics")
@documented("Prometheus metrics", auth=False, responses={200: Body(
    "text/plain", {"type": "string"}, "Prometheus text exposition format 0.0.4")})
async def metrics(request: web.Request) -> web.Response:
    """What the hub has: the store's figures are refreshed when it answers, and kept (with
    ``cardhub_store_reachable`` 0) when it does not."""
    app = request.app
    m = app[METRICS]
    try:
        health = await read_health(app)
    except StoreUnreachable:
        m.store_reachable.set(0)
    else:
        m.store_reachable.set(1)
        for name, position in health.views.items():
            m.projection_position.labels(name).set(position)
            m.projection_lag.labels(name).set(health.lag_s[name])
        m.store_position.set(health.store)
        m.degraded.set(1 if _problems(app, health) else 0)
        m.checkpoint_age.set(health.checkpoint_age_s)
    return web.Response(body=generate_latest(m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
