"""The declared shapes of a stored swipe (``SwipeLog.Recorded``) and of the hub's answers.

Stored payloads are part of the data: their keys, the order the hub inserts them in and their
values are what the audit log hashes, so the writers build exactly these dicts and nothing
rewrites them. A key that only some events carry is ``NotRequired``; one that every event
carries but may be null is ``X | None``. A new key is added ``NotRequired`` (events stored
before it lack it); any other change is a new ``class_version`` of ``SwipeLog.Recorded`` with
an upcast.

No ``from __future__ import annotations`` here: a TypedDict tells its ``NotRequired`` keys at run
time only from evaluated annotations (Python 3.11), and tests/unit/test_facts.py reads them.
"""

from typing import Any, Literal, NotRequired, TypedDict


class SignedEnvelope(TypedDict):
    """An envelope of protocol v1 exactly as the device sent and signed it (DESIGN §2), keys in
    the device's order; ``domain.wire.parse_envelope`` checks every field."""

    v: int
    device: str
    seq: int
    prev: str
    at: str
    type: str  # purchase | reversal | gate
    card: NotRequired[str]  # on every reversal; on a purchase or gate, card or credential
    credential: NotRequired[str]  # a virtual card's payment code (DESIGN §10), instead of card
    amount: NotRequired[int]  # purchase, fen
    ref_seq: NotRequired[int]  # reversal: the seq of the purchase it voids
    direction: NotRequired[str]  # gate: in | out
    offline: NotRequired[bool]  # absent: online
    decision: NotRequired[str]  # offline events only: approved | declined
    sig: str


class SwipeResult(TypedDict):
    """The hub's answer to an envelope it stored, stored beside it as ``accepted``; a resend of
    the same envelope is answered with the same keys and ``duplicate``."""

    seq: int
    status: Literal["accepted", "duplicate"]
    decision: str  # approved | declined
    reason: NotRequired[str]  # why an online event was declined
    balance: NotRequired[int]  # the account's total after it, fen, when the card is known


class Rejection(TypedDict):
    """The answer to an event the hub did not store (DESIGN §2)."""

    seq: int | None  # None: an invalid envelope without a usable seq
    status: Literal["rejected"]
    code: str
    detail: NotRequired[str]


UploadResult = SwipeResult | Rejection


class SwipeFacts(TypedDict):
    """What the hub derived when it stored a swipe, for the views and the books."""

    account_id: str | None  # None: the card is unknown
    merchant_id: str | None  # the device's (pos)
    zone: str | None  # the device's (gate)
    local_day: str  # the envelope's ``at`` in the hub's time zone, an ISO date
    subsidy_fen: int  # what a purchase took from each wallet, or a reversal gave back
    cash_fen: int
    flags: list[str]
    refunded_seq: int | None  # on a reversal that gave money back: the purchase's seq
    # Both since statistics: events stored before lack them.
    category: NotRequired[str]  # the cardholder's category, when the card is known
    refunded_at: NotRequired[str]  # on a refund: the ``at`` of the purchase it voided
    # Since expiring subsidies (DESIGN §11), on a purchase that took subsidy: [[grant ref, fen], ...]
    # in spending order, so that a refund or reversal gives it back to those grants.
    drawn: NotRequired[list[list[Any]]]
    # Since virtual cards (DESIGN §10), on a swipe paid with a payment code (``credential``): the
    # virtual card it resolved to, None when it resolved to none (``credential_invalid``).
    card: NotRequired[str | None]


def swipe_card(envelope: SignedEnvelope, facts: SwipeFacts) -> str | None:
    """The card of a stored swipe: the envelope's ``card``, or the virtual card its payment code
    resolved to (None: the code was invalid). Every reader of swipes asks here."""
    card = envelope.get("card")
    return card if card is not None else facts.get("card")


def medium(envelope: SignedEnvelope) -> str:
    """How a swipe was paid: ``phone`` (a payment code) or ``card``."""
    return "phone" if "credential" in envelope else "card"
