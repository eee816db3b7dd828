"""The shapes of the virtual-card answers (DESIGN §10), for the OpenAPI document (as ``responses``)."""

from __future__ import annotations

from typing import Literal

from hub.service.responses import Answer


class Cert(Answer):
    """The hub's certificate of a phone's key: its ``sig`` by the hub key (``GET /v1/hub/key``) over
    ``b"cardhub/vcard/v1\\n"`` + canonical(the cert without ``sig``). Names no person."""

    card: str
    key: str
    valid_until: str
    sig: str


class VirtualCard(Answer):
    card_uid: str
    account_id: str
    label: str
    status: Literal["active", "lost", "cancelled", "revoked"]
    cert: Cert
