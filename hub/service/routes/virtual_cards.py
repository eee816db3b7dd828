"""Virtual-card routes (DESIGN §10): a phone's key registered as a card of its account, and
revoked. The hub signs the card's cert with its own key (the one that signs hotlists), on the
writer thread, for the uid the domain chose; the domain never holds the key."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from aiohttp import web

from domain import paycode
from domain.application import CampusCard
from domain.cards import Card
from hub.service import responses_cards
from hub.service.http import CARD_OFFICE, authorize, card_caller, json_response, read_body
from hub.service.query import documented
from hub.service.schemas import VirtualCardIn
from hub.service.typedefs import HUB_KEY, SEAT

CERT_VALID = timedelta(days=365)  # DESIGN §10: a cert is valid for at most a year
REGISTRARS = (*CARD_OFFICE, "cardholder")
routes = web.RouteTableDef()


def virtual_card_json(card: Card) -> dict[str, Any]:
    assert card.cert is not None and card.label is not None
    return {"card_uid": card.card_uid, "account_id": card.account_id, "label": card.label, "status": card.status,
            "cert": card.cert}


@routes.post("/v1/accounts/{account_id}/virtual-cards")
@documented("Register a phone's Ed25519 key as a virtual card of the account: its own cardholder, an"
            " operator or an admin; 409 too_many_virtual_cards (three active), key_in_use, closed",
            body=VirtualCardIn, responses={201: responses_cards.VirtualCard, 404: None, 409: None})
async def register(request: web.Request) -> web.Response:
    """The uid is ``F0`` and 14 random hex digits; the cert is valid for 365 days from now."""
    account_id = request.match_info["account_id"]
    actor = authorize(request, *REGISTRARS, account=account_id).actor()
    body = await read_body(request, VirtualCardIn)
    hub_key = request.app[HUB_KEY]

    def register(app: CampusCard) -> dict[str, Any]:
        valid_until = app.clock() + CERT_VALID
        card = app.register_virtual_card(
            account_id, body.public_key, body.label, actor=actor,
            certify=lambda uid: paycode.make_cert(uid, body.public_key, valid_until, hub_key),
            new_uid=lambda: paycode.virtual_uid(secrets.token_bytes(7)))
        return virtual_card_json(card)

    return json_response(await request.app[SEAT].active().writer.run(register), status=201)


@routes.post("/v1/virtual-cards/{card_uid}/revoke")
@documented("Revoke a virtual card (remove its phone): on the hotlist for good; its own cardholder, an"
            " operator or an admin; 409 when revoked or cancelled before, or for a chip card (not_virtual)",
            responses={200: responses_cards.VirtualCard, 404: None, 409: None})
async def revoke(request: web.Request) -> web.Response:
    """A cardholder revokes the cards of its own account: another's card, and an unknown one, are
    403 alike (checked on the writer, which alone knows a card's account)."""
    actor, owner = card_caller(request)
    uid = request.match_info["card_uid"]
    card = await request.app[SEAT].active().writer.run(
        lambda app: virtual_card_json(app.revoke_virtual_card(uid, actor=actor, owner=owner)))
    return json_response(card)
