"""Cardholders' query PINs and sign-in (DESIGN §10): ``POST /v1/accounts/{id}/pin`` and
``POST /v1/sessions``, which issues a 12-hour ``cardholder`` token for the account.

Sign-in is the one place a university's single sign-on would take over: another route that
checks the SSO's assertion instead of a PIN and issues the same token (the rest of the API
only ever sees the token). Hashing, verification and the lockout are ``hub.service.sign_in``.
A PIN is in no log, event, view, answer or problem: the events hold its hash, sealed."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import NoReturn

from aiohttp import web

from domain import personal
from domain.actors import token_actor
from hub.service import responses
from hub.service.http import Problem, authorize, json_response, read_body
from hub.service.keys import new_claims, sign_claims
from hub.service.query import documented
from hub.service.schemas import PinIn, SessionIn
from hub.service.sign_in import PIN_FIELD, hash_to_check, stored_hash
from hub.service.typedefs import POOL, SEAT, SIGN_IN, TOKENS, TOKEN_KEYS
from projections import ledger_queries

SESSION_TTL_S = 12 * 3600
CARDHOLDER = "cardholder"
routes = web.RouteTableDef()
# One answer for every failed sign-in: a wrong PIN, an unknown, closed or erased account, one without a PIN.
SIGN_IN_FAILED = ("sign_in_failed", "the account id or the PIN is wrong")
# A failed sign-in is answered no sooner than this after it came: the dummy hash evens out the
# argon2 work, and this the rest (an unknown id's store read on the writer took ~3 ms more).
FAILED_ANSWER_S = 0.25


def _locked(retry_after_s: int) -> Problem:
    return Problem(429, "locked", f"too many wrong PINs for this account: try again in {retry_after_s} s",
                   headers={"Retry-After": str(retry_after_s)})


def _refuse_if_locked(request: web.Request, account_id: str) -> None:
    retry_after_s = request.app[SIGN_IN].lockout.retry_after_s(account_id)
    if retry_after_s is not None:
        raise _locked(retry_after_s)


@routes.post("/v1/accounts/{account_id}/pin")
@documented("Set the account's query PIN (the card office), or change it (its cardholder, with old_pin)",
            body=PinIn, responses={200: responses.PinSet, 404: None, 409: None, 429: None})
async def set_pin(request: web.Request) -> web.Response:
    """A cardholder gives ``old_pin``: a wrong one is ``403 wrong_pin`` and counts towards the
    lockout (then ``429``); ``409 no_pin`` when no PIN was set (the card office sets the first)."""
    account_id = request.match_info["account_id"]
    caller = authorize(request, "admin", "operator", CARDHOLDER, account=account_id)
    body = await read_body(request, PinIn)
    app = request.app
    replacing = None
    if caller.role == CARDHOLDER:
        if body.old_pin is None:
            raise Problem(422, "invalid", "old_pin is required to change the PIN", field="old_pin")
        replacing = await _check_old_pin(request, account_id, body.old_pin)
    elif body.old_pin is not None:
        raise Problem(422, "invalid", "the card office sets a PIN without old_pin", field="old_pin")
    else:
        await app[SEAT].active().writer.run(lambda a: a.pin_of(account_id))  # 404, 409 before any hashing
    key = await ledger_queries.data_key(app[POOL], account_id)
    if key is None:
        raise Problem(409, "no_data_key", f"account {account_id} has no data key (opened before personal data"
                      " was sealed): it cannot keep a PIN")
    sealed = personal.seal(key, account_id, PIN_FIELD, await app[SIGN_IN].pins.hash(body.pin))
    actor = caller.actor()
    set_at = await app[SEAT].active().writer.run(
        lambda a: a.set_pin(account_id, sealed, actor=actor, replacing=replacing).pin_set_at)
    return json_response({"account_id": account_id, "pin_set_at": set_at})


async def _check_old_pin(request: web.Request, account_id: str, old_pin: str) -> personal.Sealed:
    """The sealed hash the cardholder's ``old_pin`` matches; else 429, 409 ``no_pin`` or 403."""
    _refuse_if_locked(request, account_id)
    sign_in = request.app[SIGN_IN]
    sealed, hashed = await stored_hash(request.app[SEAT].active().writer, request.app[POOL], account_id)
    if sealed is None:
        raise Problem(409, "no_pin", f"account {account_id} has no PIN: the card office sets the first one")
    _refuse_if_locked(request, account_id)  # failures counted while this one waited
    if not await sign_in.pins.verify(hashed, old_pin):
        sign_in.lockout.failed(account_id)
        raise Problem(403, "wrong_pin", "old_pin is not the account's PIN")
    sign_in.lockout.succeeded(account_id)
    return sealed


@routes.post("/v1/sessions")
@documented("Sign in as a cardholder with the account id and its PIN: a 12-hour token for that account",
            body=SessionIn, auth=False, responses={201: responses.Session, 401: None, 429: None})
async def create_session(request: web.Request) -> web.Response:
    """The same ``401 sign_in_failed`` whatever failed; ``429 locked`` with ``Retry-After`` after
    five failures for the account id within 15 minutes (a right PIN too, until the lock ends)."""
    started = time.monotonic()
    body = await read_body(request, SessionIn)
    account_id, app = body.account_id, request.app
    sign_in = app[SIGN_IN]
    _refuse_if_locked(request, account_id)
    async with sign_in.pins.slots:  # the lookup too: a flood of sign-ins costs the writer little
        _refuse_if_locked(request, account_id)
        hashed = await hash_to_check(app[SEAT].active().writer, app[POOL], account_id)
    if not await sign_in.pins.verify(hashed, body.pin):
        sign_in.lockout.failed(account_id)
        await _failed(started)
    sign_in.lockout.succeeded(account_id)
    key = app[TOKEN_KEYS].current
    claims = new_claims(key, CARDHOLDER, account_id, ttl_s=SESSION_TTL_S)
    actor = token_actor(CARDHOLDER, account_id, claims.jti)  # the cardholder signing in
    await app[SEAT].active().writer.run(lambda a: a.record_token(
        claims.jti, claims.role, claims.scope, claims.kid, claims.iat, claims.exp, actor))
    app[TOKENS].mark_issued(claims.jti, claims.exp)
    return json_response({"token": sign_claims(key, claims), "account_id": account_id,
                          "expires_at": datetime.fromtimestamp(claims.exp, UTC).isoformat()}, status=201)


async def _failed(started: float) -> NoReturn:
    """The one 401 of a failed sign-in, ``FAILED_ANSWER_S`` after the request came (or at once,
    when checking took longer: the host was busy for every kind of failure alike)."""
    await asyncio.sleep(max(0.0, started + FAILED_ANSWER_S - time.monotonic()))
    raise Problem(401, *SIGN_IN_FAILED)
